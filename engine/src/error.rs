//! Error types, one per boundary.

use crate::value::FieldType;

/// A schema was refused (R11).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The JSON did not parse.
    #[error("schema is not valid JSON at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A model or field has an empty name.
    #[error("model {model}: empty name")]
    EmptyName {
        /// The model (or its position).
        model: String,
    },
    /// Two models share a name.
    #[error("model {model} is defined twice")]
    DuplicateModel {
        /// The name.
        model: String,
    },
    /// Two fields of a model share a name.
    #[error("model {model}: field {field} is defined twice")]
    DuplicateField {
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// A link names a field the model does not declare.
    #[error("model {model}: link on unknown declarative field {field}")]
    UnknownLinkField {
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// A link names a model that does not exist.
    #[error("model {model}: link {field} targets unknown model {target}")]
    UnknownTarget {
        /// The model.
        model: String,
        /// The link field.
        field: String,
        /// The missing target.
        target: String,
    },
    /// A link is on a field that is not `ref`/`refs`.
    #[error("model {model}: link on field {field} of type {ty}, which is not ref or refs")]
    LinkOnNonReference {
        /// The model.
        model: String,
        /// The field.
        field: String,
        /// Its type.
        ty: FieldType,
    },
    /// A `ref`/`refs` field has no link saying what it points at.
    #[error("model {model}: reference field {field} has no link")]
    ReferenceWithoutLink {
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// Two links on one field.
    #[error("model {model}: field {field} has two links")]
    DuplicateLink {
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// A feedback field is a reference (feedback never creates dependencies).
    #[error("model {model}: feedback field {field} cannot be a reference")]
    FeedbackReference {
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// `depends_on_models` names an unknown model.
    #[error("model {model}: depends on unknown model {target}")]
    UnknownDependsOn {
        /// The model.
        model: String,
        /// The missing model.
        target: String,
    },
    /// An `into` filter names a field the watched model does not have.
    #[error("model {model}: watches unknown field {field} of {target}")]
    UnknownIntoField {
        /// The watching model.
        model: String,
        /// The watched model.
        target: String,
        /// The unknown field.
        field: String,
    },
    /// A dependency cycle among models (R11).
    #[error("model dependency cycle: {}", .models.join(" -> "))]
    ModelCycle {
        /// The models on the cycle, in order, smallest name first.
        models: Vec<String>,
    },
    /// A watch loop (R11).
    #[error("watch loop: {}", .models.join(" -> "))]
    WatchLoop {
        /// The models on the loop, in order, smallest name first.
        models: Vec<String>,
    },
    /// A size limit was exceeded.
    #[error("schema has too many {what} (at most {max})")]
    TooLarge {
        /// What is too many.
        what: &'static str,
        /// The limit.
        max: usize,
    },
}

/// A change set was refused; the engine is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The JSON did not parse.
    #[error("change set is not valid JSON at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// An upsert names a model the schema lacks.
    #[error("object {key}: unknown model {model}")]
    UnknownModel {
        /// The key.
        key: String,
        /// The model.
        model: String,
    },
    /// An upsert names a field the model lacks.
    #[error("object {key}: model {model} has no field {field}")]
    UnknownField {
        /// The key.
        key: String,
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// A change writes a feedback field (R9).
    #[error("object {key}: field {field} of {model} is feedback, written only by its actuator")]
    FeedbackWrite {
        /// The key.
        key: String,
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// A value does not fit its field.
    #[error("object {key}: field {field} wants {expected}, got {found}")]
    WrongType {
        /// The key.
        key: String,
        /// The field.
        field: String,
        /// The field's type.
        expected: FieldType,
        /// What was given.
        found: String,
    },
    /// A reference to a key that neither exists nor is created in the same set.
    #[error("object {key}: field {field} references missing object {target}")]
    DanglingReference {
        /// The key.
        key: String,
        /// The field.
        field: String,
        /// The missing key.
        target: String,
    },
    /// A reference to an object of the wrong model.
    #[error("object {key}: field {field} must reference a {expected}, but {target} is a {found}")]
    WrongTargetModel {
        /// The key.
        key: String,
        /// The field.
        field: String,
        /// The referenced key.
        target: String,
        /// The model the link wants.
        expected: String,
        /// The referenced object's model.
        found: String,
    },
    /// An upsert changes the model of an existing object.
    #[error("object {key} is a {existing}, not a {model}")]
    ModelMismatch {
        /// The key.
        key: String,
        /// The object's model.
        existing: String,
        /// The model the upsert names.
        model: String,
    },
    /// A delete of a key that does not exist.
    #[error("object {key} does not exist")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// An upsert of an object that is being deleted.
    #[error("object {key} is being deleted")]
    Deleting {
        /// The key.
        key: String,
    },
    /// A change adds a reference to an object that is being deleted (R7): the delete would
    /// wait for the new referrer and the referrer for the delete, forever.
    #[error("object {key}: field {field} references {target}, which is being deleted")]
    ReferenceToDeleting {
        /// The referring key.
        key: String,
        /// The link field.
        field: String,
        /// The key being deleted.
        target: String,
    },
    /// The same key twice in one change set (R12).
    #[error("object {key} appears twice in the change set")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// The change would create an object cycle (R11).
    #[error("object cycle: {}", .keys.join(" -> "))]
    Cycle {
        /// The keys on the cycle, in dependency order, smallest first.
        keys: Vec<String>,
    },
    /// A policy returned an error.
    #[error("policy of {model} failed on {key}: {message}")]
    Policy {
        /// The policy's model.
        model: String,
        /// The object it was called on.
        key: String,
        /// Its message.
        message: String,
    },
    /// Policies still produced changes after the round limit (R10).
    #[error("model policies of {} still changing after {rounds} rounds", .models.join(", "))]
    PolicyLoop {
        /// The models whose policies changed things in the last round, sorted.
        models: Vec<String>,
        /// The limit.
        rounds: u32,
    },
    /// A limit was exceeded: `"change set"` (entries, policy output included:
    /// `changes_max`) or `"object count"` (`objects_max`) of the engine's configuration, or
    /// what one store holds: `"edge count"` (live dependency edges) or `"key bytes"` (the
    /// bytes of every live key).
    #[error("{what} exceeds the limit of {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A field value exceeds a size limit of the engine's configuration: `what` is one of
    /// `"string length"`, `"bytes length"`, `"json length"`, `"json depth"`,
    /// `"reference count"`, `"reference key length"`.
    #[error("object {key}: field {field}: {what} exceeds the limit of {max}")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The field.
        field: String,
        /// What is too large.
        what: &'static str,
        /// The limit (`Config`'s matching `*_max`).
        max: usize,
    },
    /// A key is longer than `Config::key_len_max`.
    #[error("object key of {len} bytes starting {prefix:?} exceeds the limit of {max}")]
    KeyTooLong {
        /// The key's first characters (at most [`KEY_PREFIX_LEN`] bytes).
        prefix: String,
        /// Its length, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A key is the empty string.
    #[error("object key is empty")]
    EmptyKey,
    /// A row of [`Rows`](crate::Rows) has more or fewer values than its columns.
    #[error(
        "object {key}: a {model} row of {columns} columns was given {values} {}",
        if .values.eq(&1) { "value" } else { "values" }
    )]
    RowLength {
        /// The row's key.
        key: String,
        /// The rows' model.
        model: String,
        /// Number of columns.
        columns: usize,
        /// Number of values given.
        values: usize,
    },
    /// [`Rows`](crate::Rows) name a field twice.
    #[error("{model} rows name field {field} twice")]
    DuplicateColumn {
        /// The rows' model.
        model: String,
        /// The field.
        field: String,
    },
}

/// How much of an overlong key [`ChangeError::KeyTooLong`] quotes, in bytes.
pub const KEY_PREFIX_LEN: usize = 32;

impl ChangeError {
    /// [`ChangeError::KeyTooLong`] for `key`, quoting its first [`KEY_PREFIX_LEN`] bytes
    /// (cut at a character boundary).
    pub(crate) fn key_too_long(key: &str, max: usize) -> ChangeError {
        let mut end = key.len().min(KEY_PREFIX_LEN);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        ChangeError::KeyTooLong {
            prefix: key[..end].to_string(),
            len: key.len(),
            max,
        }
    }
}

/// A completion was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompleteError {
    /// The task's object no longer exists.
    #[error("no object with id {id} and version {version}")]
    UnknownObject {
        /// The id.
        id: u32,
        /// The version.
        version: u64,
    },
    /// An external report for an object that is not of an external model.
    #[error("object {key} is not of an external model")]
    NotExternal {
        /// The key.
        key: String,
    },
    /// A task the engine never planned: the object's model is external or passive (they
    /// get no tasks, R17), the task names another model, a version the object never had,
    /// or a delete of an object that is not being deleted.
    #[error("task for {key} (version {version}) was never planned: {why}")]
    NotPlanned {
        /// The object's key.
        key: String,
        /// The task's version.
        version: u64,
        /// What does not match.
        why: &'static str,
    },
    /// A report names an unknown key.
    #[error("object {key} does not exist")]
    UnknownKey {
        /// The key.
        key: String,
    },
}

/// Snapshot bytes could not be restored (R14).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not a syncore snapshot.
    #[error("not a syncore snapshot (bad magic)")]
    BadMagic,
    /// Written by another format version.
    #[error("snapshot format version {found}, this build reads {expected}")]
    Version {
        /// The version in the bytes.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The checksum does not match: bytes were changed or cut.
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    /// The schema inside the snapshot is invalid.
    #[error("snapshot schema: {0}")]
    Schema(#[from] SchemaError),
}
