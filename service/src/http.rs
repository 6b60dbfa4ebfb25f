//! The HTTP API (JSON), the event stream, `/metrics` and the web page.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/changes` | apply a change set (a JSON array of changes); answers `{"seq", "versions", "deleted"}` once durable |
//! | `POST /v1/objects/{key}/report` | report an external object: `{"synced": {"version": 3}}` or `{"failed": {"version": 3, "message": "..."}}` (the version the report is about, R17) |
//! | `GET /v1/objects/{key}` | one object: fields, feedback, status, hold reason, retry time, its lease in flight, the scheduler's activity (`in_flight`, `queued`, `waiting`, `idle`) |
//! | `GET /v1/objects?status=&model=&limit=` | objects filtered by status and model (default limit 1,000) |
//! | `GET /v1/plan` | the current plan: tasks and holds with reasons, the next wake time |
//! | `GET /v1/status` | counts by status, objects, in flight, queue depth, the applied and durable log positions |
//! | `GET /v1/state-hash` | the scheduler's state hash (`Scheduler::state_hash`, O(state)) and the log position it is after: what replaying the log must reproduce |
//! | `GET /v1/graph` | objects (status) and their dependency edges, for the page (first 2,000) |
//! | `GET /v1/actuations` | recent actuations (start, end, outcome), for the Gantt chart |
//! | `GET /v1/events` | server-sent events: `did_apply`, `will_actuate`, `did_actuate`, `did_report`, `timed_out`, `late_delivery` |
//! | `GET /metrics` | Prometheus text |
//! | `GET /` | the web page |
//!
//! Errors are `{"error": {"kind", "message", ...}}` with a 4xx status (see [`ApiError`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query as Q, Request, State as S};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam::channel::Sender;
use futures_util::Stream;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value as Json_};
use syncore::sched::Activity;
use syncore::{ChangeSet, ExternalReport, Status};
use tokio::sync::{broadcast, oneshot};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::driver::{Msg, Refused, State};
use crate::errors::ApiError;
use crate::log::InputLog;
use crate::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    /// The driver's inbox.
    pub tx: Sender<Msg>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The log (for its counters).
    pub log: Arc<dyn InputLog>,
    /// Trace events.
    pub events: broadcast::Sender<String>,
    /// The bearer token required, if any.
    pub token: Option<Arc<str>>,
    /// The rate limit's token bucket, if any.
    pub bucket: Option<Arc<Mutex<Bucket>>>,
}

/// A token bucket holding one second's worth of requests.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket for `rate` requests per second.
    pub fn new(rate: u32) -> Bucket {
        Bucket {
            rate: rate.into(),
            tokens: rate.into(),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The router over `api`, with request bodies capped at `body_max` bytes.
pub fn router(api: Api, body_max: usize) -> Router {
    let r = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/v1/changes", post(apply))
        .route("/v1/objects", get(list))
        .route("/v1/objects/{key}", get(object))
        .route("/v1/objects/{key}/report", post(report))
        .route("/v1/plan", get(plan))
        .route("/v1/status", get(status))
        .route("/v1/state-hash", get(state_hash))
        .route("/v1/graph", get(graph))
        .route("/v1/actuations", get(actuations))
        .route("/v1/events", get(events))
        .layer(axum::extract::DefaultBodyLimit::max(body_max));
    // The guard runs only when it has something to check.
    let r = if api.token.is_some() || api.bucket.is_some() {
        r.layer(middleware::from_fn_with_state(api.clone(), guard))
    } else {
        r
    };
    r.with_state(api)
}

/// Bearer token (when one is configured) and rate limit, before any handler.
async fn guard(S(api): S<Api>, req: Request, next: Next) -> Response {
    if let Some(token) = &api.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            let kind = if given.is_none() {
                "missing_token"
            } else {
                "wrong_token"
            };
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                kind,
                "a valid bearer token is required",
            )
            .into_response();
        }
    }
    if let Some(b) = &api.bucket {
        if !b.lock().take() {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down",
            )
            .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs `f` on the driver thread and returns its answer.
async fn ask<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce(&State<'_>) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let q = Box::new(move |s: &State<'_>| {
        let _ = tx.send(f(s));
    });
    api.tx.send(Msg::Query(q)).map_err(|_| stopping())?;
    rx.await.map_err(|_| stopping())
}

fn stopping() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the service is stopping",
    )
}

fn body_text(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_body"
        };
        ApiError::new(status, kind, e.body_text())
    })
}

async fn apply(S(api): S<Api>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let received = Instant::now();
    let body = body_text(body)?;
    let set: ChangeSet = serde_json::from_slice(&body).map_err(|e| ApiError::parse(&e))?;
    let (tx, rx) = oneshot::channel();
    api.tx
        .send(Msg::Apply(set, received, tx))
        .map_err(|_| stopping())?;
    match rx.await.map_err(|_| stopping())? {
        Ok(a) => Ok(Json(a).into_response()),
        Err(Refused::Change(e)) => {
            // Only a refusal needs the change set again (to name the entry): parsed anew
            // from the body, which parsed before, rather than copied for every request.
            let set: ChangeSet = serde_json::from_slice(&body).map_err(|e| ApiError::parse(&e))?;
            Err(ApiError::change(&e, &set))
        }
        Err(Refused::Report(e)) => Err(ApiError::report(&e)),
        Err(Refused::Log(m)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "log", m)),
        Err(Refused::ShuttingDown) => Err(stopping()),
    }
}

async fn report(
    S(api): S<Api>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_text(body)?;
    let r: ExternalReport = serde_json::from_slice(&body).map_err(|e| ApiError::parse(&e))?;
    let (tx, rx) = oneshot::channel();
    api.tx
        .send(Msg::Report(key, r, tx))
        .map_err(|_| stopping())?;
    match rx.await.map_err(|_| stopping())? {
        Ok(seq) => Ok(Json(json!({"seq": seq})).into_response()),
        Err(Refused::Report(e)) => Err(ApiError::report(&e)),
        Err(Refused::Log(m)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "log", m)),
        Err(_) => Err(stopping()),
    }
}

fn status_name(s: &Status) -> &'static str {
    match s {
        Status::Synced => "synced",
        Status::Pending => "pending",
        Status::Error { .. } => "error",
        Status::Deferred { .. } => "deferred",
        Status::Blocked { .. } => "blocked",
        Status::WaitingExternal { .. } => "waiting_external",
        Status::WaitingReferrers { .. } => "waiting_referrers",
    }
}

/// One object as the API shows it.
fn object_json(s: &State<'_>, plan: &syncore::Plan, key: &str) -> Option<Json_> {
    let e = s.engine;
    let info = e.object(key)?;
    let status = e.status_in(plan, info.id);
    let fields: BTreeMap<_, _> = info
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let feedback: BTreeMap<_, _> = info
        .feedback
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let hold = plan.hold(info.id).map(|h| hold_json(s, h));
    let running = s.sched.lease(info.id).map(
        |l| json!({"version": l.task.version, "since": l.started.0, "attempt": l.attempt, "lease": l.id.seq}),
    );
    let activity = match s.sched.activity(&info.key) {
        Some(Activity::InFlight { .. }) => "in_flight",
        Some(Activity::Queued { .. }) => "queued",
        Some(Activity::Waiting) => "waiting",
        _ => "idle",
    };
    Some(json!({
        "key": info.key, "model": info.model, "version": info.version, "enacted": info.enacted,
        "status": status_name(&status), "detail": status, "hold": hold,
        "failures": info.failures, "retry_at": info.retry_at.map(|t| t.0),
        "message": info.message, "deleting": info.deleting, "in_flight": running,
        "activity": activity,
        "fields": fields, "feedback": feedback,
    }))
}

fn hold_json(s: &State<'_>, h: &syncore::HoldReason) -> Json_ {
    use syncore::HoldReason as H;
    let k = |id: &syncore::ObjectId| s.engine.key(*id).to_string();
    match h {
        H::Blocked { by } => json!({"reason": "blocked", "by": k(by)}),
        H::BackingOff { until } => json!({"reason": "backing_off", "until": until.0}),
        H::WaitingExternal { key } => json!({"reason": "waiting_external", "key": k(key)}),
        H::WaitingReferrers { keys } => {
            json!({"reason": "waiting_referrers", "keys": keys.iter().map(k).collect::<Vec<_>>()})
        }
        H::ExternalFailed => json!({"reason": "external_failed"}),
        #[allow(unreachable_patterns)]
        _ => json!({"reason": format!("{h:?}")}),
    }
}

async fn object(S(api): S<Api>, Path(key): Path<String>) -> Result<Response, ApiError> {
    let k = key.clone();
    let found = ask(&api, move |s| {
        let plan = s.engine.plan(s.now);
        object_json(s, &plan, &k)
    })
    .await?;
    match found {
        Some(o) => Ok(Json(o).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("object {key} does not exist"),
        )
        .with("key", key)),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    model: Option<String>,
    limit: Option<usize>,
}

async fn list(S(api): S<Api>, Q(q): Q<ListQuery>) -> Result<Response, ApiError> {
    if let Some(st) = &q.status {
        const NAMES: [&str; 7] = [
            "synced",
            "pending",
            "error",
            "deferred",
            "blocked",
            "waiting_external",
            "waiting_referrers",
        ];
        if !NAMES.contains(&st.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_status",
                format!("status {st:?} is not one of {}", NAMES.join(", ")),
            ));
        }
    }
    let out = ask(&api, move |s| {
        if let Some(m) = &q.model {
            if s.engine.schema().model_id(m).is_none() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_model",
                    format!("no model named {m}"),
                )
                .with("model", m.clone()));
            }
        }
        let plan = s.engine.plan(s.now);
        let limit = q.limit.unwrap_or(1000);
        let mut out = Vec::new();
        for key in s.engine.keys() {
            if out.len() >= limit {
                break;
            }
            let Some(id) = s.engine.id(key) else { continue };
            if let Some(m) = &q.model {
                if s.engine.view(id).model() != m {
                    continue;
                }
            }
            if let Some(st) = &q.status {
                if status_name(&s.engine.status_in(&plan, id)) != st {
                    continue;
                }
            }
            out.extend(object_json(s, &plan, key));
        }
        Ok(out)
    })
    .await??;
    Ok(Json(out).into_response())
}

async fn plan(S(api): S<Api>) -> Result<Response, ApiError> {
    let out = ask(&api, |s| {
        let plan = s.engine.plan(s.now);
        let e = s.engine;
        let tasks: Vec<_> = plan
            .tasks
            .iter()
            .map(|t| json!({"key": e.key(t.object), "model": e.schema().model(t.model).name,
                "version": t.version, "kind": format!("{:?}", t.kind).to_lowercase(),
                "in_flight": s.sched.lease(t.object).is_some()}))
            .collect();
        let holds: Vec<_> = plan
            .holds
            .iter()
            .map(|h| {
                let mut j = hold_json(s, &h.reason);
                if let Some(o) = j.as_object_mut() {
                    o.insert("key".into(), e.key(h.object).into());
                }
                j
            })
            .collect();
        json!({"now": s.now.0, "tasks": tasks, "holds": holds, "next_wake": plan.next_wake.map(|t| t.0)})
    })
    .await?;
    Ok(Json(out).into_response())
}

async fn status(S(api): S<Api>) -> Result<Response, ApiError> {
    let durable = api.log.durable();
    let out = ask(&api, move |s| {
        let plan = s.engine.plan(s.now);
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        let mut unsettled = 0;
        for key in s.engine.keys() {
            let Some(id) = s.engine.id(key) else { continue };
            let st = s.engine.status_in(&plan, id);
            if st != Status::Synced {
                unsettled += 1;
            }
            *counts.entry(status_name(&st)).or_default() += 1;
        }
        json!({"objects": s.engine.len(), "unsettled": unsettled, "counts": counts,
            "in_flight": s.sched.in_flight(), "queue_depth": s.sched.queue_depth(),
            "durable_seq": durable, "applied_seq": s.applied, "now": s.now.0,
            "converged": unsettled == 0 && s.sched.in_flight() == 0})
    })
    .await?;
    Ok(Json(out).into_response())
}

async fn state_hash(S(api): S<Api>) -> Result<Response, ApiError> {
    let out = ask(&api, |s| {
        json!({"applied_seq": s.applied, "state_hash": format!("{:016x}", s.sched.state_hash())})
    })
    .await?;
    Ok(Json(out).into_response())
}

async fn graph(S(api): S<Api>) -> Result<Response, ApiError> {
    let out = ask(&api, |s| {
        let plan = s.engine.plan(s.now);
        let e = s.engine;
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for key in e.keys().take(2000) {
            let Some(o) = object_json(s, &plan, key) else {
                continue;
            };
            let Some(id) = e.id(key) else { continue };
            for dep in e.view(id).dependencies() {
                edges.push(json!({"from": key, "to": dep.key()}));
            }
            nodes.push(o);
        }
        json!({"nodes": nodes, "edges": edges, "now": s.now.0})
    })
    .await?;
    Ok(Json(out).into_response())
}

async fn actuations(S(api): S<Api>) -> Result<Response, ApiError> {
    let out = ask(
        &api,
        |s| json!({"now": s.now.0, "spans": s.recent.iter().collect::<Vec<_>>()}),
    )
    .await?;
    Ok(Json(out).into_response())
}

async fn events(S(api): S<Api>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(api.events.subscribe()).filter_map(|m| match m {
        Ok(text) => Some(Ok(Event::default().data(text))),
        // A slow reader misses events; tell it how many.
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            Some(Ok(Event::default().event("lagged").data(n.to_string())))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn metrics(S(api): S<Api>) -> Response {
    let text = api.metrics.render(&api.log.stats());
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4"
            .parse()
            .unwrap_or(header::HeaderValue::from_static("text/plain")),
    );
    (h, text).into_response()
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}
