//! API errors: every refusal is a JSON body `{"error": {"kind": ..., "message": ...}}`
//! with the entry, key, field, line and column it is about, and a 4xx status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use syncore::{ChangeError, ChangeSet, CompleteError};

/// A typed API error.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `error` object.
    pub body: Json,
}

impl ApiError {
    /// An error of `kind` with a message.
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({"kind": kind, "message": message.into()}),
        }
    }

    /// Adds a field to the `error` object.
    pub fn with(mut self, name: &str, value: impl Into<Json>) -> ApiError {
        if let Some(o) = self.body.as_object_mut() {
            o.insert(name.to_string(), value.into());
        }
        self
    }

    /// A JSON parse error at line and column.
    pub fn parse(e: &serde_json::Error) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "parse",
            format!(
                "invalid JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )
        .with("line", e.line())
        .with("column", e.column())
    }

    /// A change set refused by the engine, naming the entry (its index in `set`), key and
    /// field.
    pub fn change(e: &ChangeError, set: &ChangeSet) -> ApiError {
        let (kind, key, field): (&str, Option<&str>, Option<&str>) = match e {
            ChangeError::Parse { .. } => ("parse", None, None),
            ChangeError::UnknownModel { key, .. } => ("unknown_model", Some(key), None),
            ChangeError::UnknownField { key, field, .. } => {
                ("unknown_field", Some(key), Some(field))
            }
            ChangeError::FeedbackWrite { key, field, .. } => {
                ("feedback_write", Some(key), Some(field))
            }
            ChangeError::WrongType { key, field, .. } => ("wrong_type", Some(key), Some(field)),
            ChangeError::DanglingReference { key, field, .. } => {
                ("dangling_reference", Some(key), Some(field))
            }
            ChangeError::WrongTargetModel { key, field, .. } => {
                ("wrong_target_model", Some(key), Some(field))
            }
            ChangeError::ModelMismatch { key, .. } => ("model_mismatch", Some(key), None),
            ChangeError::UnknownKey { key } => ("unknown_key", Some(key), None),
            ChangeError::Deleting { key } => ("deleting", Some(key), None),
            ChangeError::DuplicateKey { key } => ("duplicate_key", Some(key), None),
            ChangeError::Cycle { .. } => ("cycle", None, None),
            ChangeError::Policy { key, .. } => ("policy", Some(key), None),
            ChangeError::PolicyLoop { .. } => ("policy_loop", None, None),
            ChangeError::TooLarge { .. } => ("too_large", None, None),
            ChangeError::ValueTooLarge { key, field, .. } => {
                ("value_too_large", Some(key), Some(field))
            }
            ChangeError::KeyTooLong { .. } => ("key_too_long", None, None),
            ChangeError::EmptyKey => ("empty_key", None, None),
            _ => ("refused", None, None),
        };
        let status = match e {
            ChangeError::Parse { .. } => StatusCode::BAD_REQUEST,
            ChangeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut err = ApiError::new(status, kind, e.to_string());
        if let Some(k) = key {
            err = err.with("key", k);
            if let Some(i) = set.changes.iter().position(|c| c.key() == k) {
                err = err.with("entry", i);
            }
        }
        if let Some(f) = field {
            err = err.with("field", f);
        }
        if let ChangeError::Cycle { keys } = e {
            err = err.with("keys", keys.clone());
        }
        if let ChangeError::Parse { line, column, .. } = e {
            err = err.with("line", *line).with("column", *column);
        }
        err
    }

    /// A report refused by the engine.
    pub fn report(e: &CompleteError) -> ApiError {
        let (status, kind) = match e {
            CompleteError::UnknownKey { .. } => (StatusCode::NOT_FOUND, "unknown_key"),
            CompleteError::NotExternal { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "not_external"),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        };
        ApiError::new(status, kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"error": self.body}))).into_response()
    }
}
