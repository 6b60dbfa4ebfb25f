//! Named bad inputs, each with the exact error it must produce (issue 7).
//!
//! Goal: every way a schema file, change set, snapshot or completion can be wrong gives
//! one precise, typed error with a message naming what is wrong, and changes nothing.
//! Method: a table; each row is applied to a fresh copy of one base engine (some rows first
//! tighten a limit of its configuration), the error is compared with the expected variant
//! and fields and with the expected message, and the engine's snapshot bytes are compared
//! before and after.

use std::collections::BTreeMap;

use syncore::{
    Change, ChangeError, ChangeSet, CompleteError, Config, Engine, ExternalReport, FieldType,
    ModelId, ObjectId, Outcome, Rows, Schema, SchemaError, SnapshotError, Task, TaskKind, Time,
    Value, FORMAT_VERSION, MAGIC,
};

const SCHEMA: &str = r#"{"models": [
  {"name": "Site", "feedback": [{"name": "ip", "type": "string"}]},
  {"name": "Tag", "kind": "passive"},
  {"name": "Owner", "kind": "external"},
  {"name": "Slice",
   "fields": [{"name": "site", "type": "ref"}, {"name": "tags", "type": "refs"},
              {"name": "on", "type": "bool"}, {"name": "n", "type": "int"},
              {"name": "x", "type": "float"}, {"name": "s", "type": "string"},
              {"name": "b", "type": "bytes"}, {"name": "j", "type": "json"}],
   "feedback": [{"name": "state", "type": "string"}],
   "links": [{"field": "site", "target": "Site"}, {"field": "tags", "target": "Tag"}]},
  {"name": "Node", "fields": [{"name": "parent", "type": "ref"}],
   "links": [{"field": "parent", "target": "Node"}]}
]}"#;

/// The base state: a site, a tag, an external owner, a slice, a node chain, one object
/// being deleted, and a failure with backoff.
fn base() -> Engine {
    let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default());
    let none = Vec::<(String, Value)>::new;
    engine
        .apply(
            ChangeSet::new()
                .upsert("site", "Site", none())
                .upsert("gone", "Site", none())
                .upsert("tag", "Tag", none())
                .upsert("owner", "Owner", none())
                .upsert("slice", "Slice", [("site", "site")])
                .upsert("n1", "Node", none())
                .upsert("n2", "Node", [("parent", "n1")]),
        )
        .unwrap();
    for task in engine.plan(Time(0)).tasks {
        let outcome = if engine.key(task.object) == "n1" {
            Outcome::failed("backend down")
        } else {
            Outcome::ok()
        };
        engine.complete(&task, outcome, Time(0)).unwrap();
    }
    engine.apply(ChangeSet::new().delete("gone")).unwrap();
    engine
}

/// What a row feeds the engine.
enum Input {
    /// Schema JSON text (`Schema::from_json`).
    Schema(String),
    /// Change-set JSON text (`ChangeSet::from_json`, then `apply`).
    ChangeJson(String),
    /// A change set built in code (`apply`).
    Changes(Vec<Change>),
    /// Rows (`apply_rows`).
    Rows(Rows),
    /// Snapshot bytes (`Engine::restore`).
    Snapshot(Vec<u8>),
    /// A completion (`complete`).
    Complete(Task, Outcome),
    /// An external report (`report_external`).
    External(&'static str, ExternalReport),
}

/// The error a row must produce.
#[derive(Debug, PartialEq)]
enum Want {
    Schema(SchemaError),
    Change(ChangeError),
    Snapshot(SnapshotError),
    Complete(CompleteError),
}

struct Case {
    name: &'static str,
    /// Tightens the base engine's configuration first (`None`: the defaults).
    config: Option<fn(&mut Config)>,
    input: Input,
    want: Want,
    message: String,
}

fn case(name: &'static str, input: Input, want: Want, message: impl Into<String>) -> Case {
    Case {
        name,
        config: None,
        input,
        want,
        message: message.into(),
    }
}

fn json(s: &str) -> Input {
    Input::ChangeJson(s.to_string())
}

fn schema(s: &str) -> Input {
    Input::Schema(s.to_string())
}

fn upsert(key: &str, model: &str, fields: Vec<(&str, Value)>) -> Input {
    Input::Changes(vec![Change::upsert(key, model, fields)])
}

/// Rows of `model` with `columns`, one per `(key, values)`.
fn rows(model: &str, columns: &[&str], entries: Vec<(&str, Vec<Value>)>) -> Input {
    let mut rows = Rows::new(model, columns.iter().copied()).unwrap();
    for (key, values) in entries {
        rows.push(key, values).unwrap();
    }
    Input::Rows(rows)
}

fn parse_schema(line: usize, column: usize, message: &str) -> (Want, String) {
    (
        Want::Schema(SchemaError::Parse {
            line,
            column,
            message: message.into(),
        }),
        format!("schema is not valid JSON at line {line}, column {column}: {message}"),
    )
}

fn parse_change(line: usize, column: usize, message: &str) -> (Want, String) {
    (
        Want::Change(ChangeError::Parse {
            line,
            column,
            message: message.into(),
        }),
        format!("change set is not valid JSON at line {line}, column {column}: {message}"),
    )
}

fn with((want, message): (Want, String), name: &'static str, input: Input) -> Case {
    case(name, input, want, message)
}

fn change_err(e: ChangeError) -> (Want, String) {
    let m = e.to_string();
    (Want::Change(e), m)
}

/// A model `M{i:04}` per name, each linking to the next, the last to the first.
fn model_ring(n: usize) -> String {
    let models: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name": "M{i:04}", "fields": [{{"name": "next", "type": "ref"}}],
                  "links": [{{"field": "next", "target": "M{:04}"}}]}}"#,
                (i + 1) % n
            )
        })
        .collect();
    format!(r#"{{"models": [{}]}}"#, models.join(","))
}

/// Nodes `r{i:04}`, each the parent of the previous, closing a ring of `n`.
fn node_ring(n: usize) -> Vec<Change> {
    (0..n)
        .map(|i| {
            Change::upsert(
                format!("r{i:04}"),
                "Node",
                [("parent", format!("r{:04}", (i + 1) % n))],
            )
        })
        .collect()
}

fn snapshot_with_version(version: u32) -> Vec<u8> {
    let mut bytes = base().snapshot();
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    bytes
}

/// A well-framed snapshot whose payload is `payload` (checksum fixed up).
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in payload {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&h.to_le_bytes());
    out
}

fn cases() -> Vec<Case> {
    let mib = 1usize << 20;
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let ring_1000: Vec<String> = (0..1000).map(|i| format!("M{i:04}")).collect();
    let keys_1000: Vec<String> = (0..1000).map(|i| format!("r{i:04}")).collect();
    let snapshot = base().snapshot();
    let mut flipped = snapshot.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let mut extended = snapshot.clone();
    extended.push(0);
    vec![
        // Schema files.
        with(
            parse_schema(1, 0, "EOF while parsing a value at line 1 column 0"),
            "schema: empty file",
            schema(""),
        ),
        with(
            parse_schema(1, 1, "expected value at line 1 column 1"),
            "schema: not JSON",
            schema("models: []"),
        ),
        with(
            parse_schema(
                1,
                11,
                "invalid type: map, expected a sequence at line 1 column 11",
            ),
            "schema: wrong type for models",
            schema(r#"{"models": {}}"#),
        ),
        with(
            parse_schema(1, 23, "duplicate field `models` at line 1 column 23"),
            "schema: duplicate keys",
            schema(r#"{"models": [], "models": []}"#),
        ),
        with(
            parse_schema(
                1,
                53,
                "invalid value: integer `99999999999`, expected u32 at line 1 column 53",
            ),
            "schema: huge number",
            schema(r#"{"models": [{"name": "A", "watch_degree": 99999999999}]}"#),
        ),
        with(
            // Refused at the first level of the wrong shape, without recursing further.
            parse_schema(
                1,
                13,
                "invalid type: sequence, expected a string at line 1 column 13",
            ),
            "schema: deep nesting",
            schema(&format!(r#"{{"models": {}}}"#, deep(10_000))),
        ),
        case(
            "schema: empty model name",
            schema(r#"{"models": [{"name": ""}]}"#),
            Want::Schema(SchemaError::EmptyName { model: "#0".into() }),
            "model #0: empty name",
        ),
        case(
            "schema: duplicate model (unicode name)",
            schema(r#"{"models": [{"name": "Réseau-🌐"}, {"name": "Réseau-🌐"}]}"#),
            Want::Schema(SchemaError::DuplicateModel {
                model: "Réseau-🌐".into(),
            }),
            "model Réseau-🌐 is defined twice",
        ),
        case(
            "schema: dangling link target",
            schema(
                r#"{"models": [{"name": "A", "fields": [{"name": "b", "type": "ref"}], "links": [{"field": "b", "target": "B"}]}]}"#,
            ),
            Want::Schema(SchemaError::UnknownTarget {
                model: "A".into(),
                field: "b".into(),
                target: "B".into(),
            }),
            "model A: link b targets unknown model B",
        ),
        case(
            "schema: reference without link",
            schema(r#"{"models": [{"name": "A", "fields": [{"name": "b", "type": "refs"}]}]}"#),
            Want::Schema(SchemaError::ReferenceWithoutLink {
                model: "A".into(),
                field: "b".into(),
            }),
            "model A: reference field b has no link",
        ),
        case(
            "schema: model depends on itself",
            schema(r#"{"models": [{"name": "A", "depends_on_models": ["A"]}]}"#),
            Want::Schema(SchemaError::ModelCycle {
                models: vec!["A".into()],
            }),
            "model dependency cycle: A",
        ),
        case(
            "schema: model cycle of 2",
            schema(&model_ring(2)),
            Want::Schema(SchemaError::ModelCycle {
                models: vec!["M0000".into(), "M0001".into()],
            }),
            "model dependency cycle: M0000 -> M0001",
        ),
        case(
            "schema: model cycle of 1000",
            schema(&model_ring(1000)),
            Want::Schema(SchemaError::ModelCycle {
                models: ring_1000.clone(),
            }),
            format!("model dependency cycle: {}", ring_1000.join(" -> ")),
        ),
        case(
            "schema: too many models",
            schema(&format!(
                r#"{{"models": [{}]}}"#,
                (0..4097)
                    .map(|i| format!(r#"{{"name": "M{i}"}}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Want::Schema(SchemaError::TooLarge {
                what: "models",
                max: 4096,
            }),
            "schema has too many models (at most 4096)",
        ),
        case(
            "schema: too many fields",
            schema(&format!(
                r#"{{"models": [{{"name": "A", "fields": [{}]}}]}}"#,
                (0..1025)
                    .map(|i| format!(r#"{{"name": "f{i}", "type": "int"}}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Want::Schema(SchemaError::TooLarge {
                what: "fields of one model",
                max: 1024,
            }),
            "schema has too many fields of one model (at most 1024)",
        ),
        // Change-set files.
        with(
            parse_change(1, 0, "EOF while parsing a value at line 1 column 0"),
            "changes: empty file",
            json(""),
        ),
        with(
            parse_change(
                1,
                0,
                "invalid type: map, expected a sequence at line 1 column 0",
            ),
            "changes: object instead of list",
            json("{}"),
        ),
        with(
            parse_change(
                1,
                10,
                "unknown variant `update`, expected `upsert` or `delete` at line 1 column 10",
            ),
            "changes: unknown change kind",
            json(r#"[{"update": {"key": "a"}}]"#),
        ),
        with(
            parse_change(1, 69, "field `n` is given twice at line 1 column 69"),
            "changes: duplicate field keys",
            json(r#"[{"upsert": {"key": "s", "model": "Slice", "fields": {"n": 1, "n": 2}}}]"#),
        ),
        with(
            parse_change(1, 64, "number out of range at line 1 column 64"),
            "changes: huge float",
            json(r#"[{"upsert": {"key": "s", "model": "Slice", "fields": {"x": 1e400}}}]"#),
        ),
        with(
            parse_change(1, 183, "recursion limit exceeded at line 1 column 183"),
            "changes: deep nesting (past the parser's limit)",
            json(&format!(
                r#"[{{"upsert": {{"key": "s", "model": "Slice", "fields": {{"j": {}}}}}}}]"#,
                deep(10_000)
            )),
        ),
        with(
            change_err(ChangeError::WrongType {
                key: "s".into(),
                field: "n".into(),
                expected: FieldType::Int,
                found: "float".into(),
            }),
            "changes: integer beyond i64",
            json(
                r#"[{"upsert": {"key": "s", "model": "Slice", "fields": {"n": 18446744073709551616}}}]"#,
            ),
        ),
        with(
            change_err(ChangeError::WrongType {
                key: "s".into(),
                field: "x".into(),
                expected: FieldType::Float,
                found: "non-finite float".into(),
            }),
            "changes: NaN",
            upsert("s", "Slice", vec![("x", Value::Float(f64::NAN))]),
        ),
        with(
            change_err(ChangeError::WrongType {
                key: "s".into(),
                field: "on".into(),
                expected: FieldType::Bool,
                found: "string".into(),
            }),
            "changes: wrong type",
            json(r#"[{"upsert": {"key": "s", "model": "Slice", "fields": {"on": "yes"}}}]"#),
        ),
        with(
            change_err(ChangeError::DuplicateKey { key: "site".into() }),
            "changes: duplicate keys",
            Input::Changes(vec![
                Change::delete("site"),
                Change::upsert("site", "Site", Vec::<(String, Value)>::new()),
            ]),
        ),
        with(
            change_err(ChangeError::UnknownModel {
                key: "x".into(),
                model: "Nope".into(),
            }),
            "changes: unknown model",
            upsert("x", "Nope", vec![]),
        ),
        with(
            change_err(ChangeError::UnknownField {
                key: "site".into(),
                model: "Site".into(),
                field: "colour".into(),
            }),
            "changes: unknown field",
            upsert("site", "Site", vec![("colour", "red".into())]),
        ),
        with(
            change_err(ChangeError::FeedbackWrite {
                key: "site".into(),
                model: "Site".into(),
                field: "ip".into(),
            }),
            "changes: feedback write (R9)",
            upsert("site", "Site", vec![("ip", "1.2.3.4".into())]),
        ),
        with(
            change_err(ChangeError::DanglingReference {
                key: "s".into(),
                field: "site".into(),
                target: "mars".into(),
            }),
            "changes: dangling reference",
            upsert("s", "Slice", vec![("site", "mars".into())]),
        ),
        with(
            change_err(ChangeError::WrongTargetModel {
                key: "s".into(),
                field: "site".into(),
                target: "tag".into(),
                expected: "Site".into(),
                found: "Tag".into(),
            }),
            "changes: reference to the wrong model",
            upsert("s", "Slice", vec![("site", "tag".into())]),
        ),
        with(
            change_err(ChangeError::ModelMismatch {
                key: "site".into(),
                existing: "Site".into(),
                model: "Tag".into(),
            }),
            "changes: model of an existing object",
            upsert("site", "Tag", vec![]),
        ),
        with(
            change_err(ChangeError::UnknownKey {
                key: "ghost".into(),
            }),
            "changes: delete of a missing key",
            Input::Changes(vec![Change::delete("ghost")]),
        ),
        with(
            change_err(ChangeError::Deleting { key: "gone".into() }),
            "changes: upsert of an object being deleted",
            upsert("gone", "Site", vec![]),
        ),
        with(
            change_err(ChangeError::Cycle {
                keys: vec!["n1".into()],
            }),
            "changes: self-reference",
            upsert("n1", "Node", vec![("parent", "n1".into())]),
        ),
        with(
            change_err(ChangeError::Cycle {
                keys: vec!["n1".into(), "n2".into()],
            }),
            "changes: cycle of 2 through a stored object",
            upsert("n1", "Node", vec![("parent", "n2".into())]),
        ),
        with(
            change_err(ChangeError::Cycle {
                keys: keys_1000.clone(),
            }),
            "changes: cycle of 1000",
            Input::Changes(node_ring(1000)),
        ),
        with(
            change_err(ChangeError::EmptyKey),
            "changes: empty key",
            upsert("", "Site", vec![]),
        ),
        with(
            change_err(ChangeError::KeyTooLong {
                prefix: "k".repeat(32),
                len: 5000,
                max: 1024,
            }),
            "changes: huge key",
            upsert(&"k".repeat(5000), "Site", vec![]),
        ),
        with(
            change_err(ChangeError::KeyTooLong {
                prefix: format!("a{}", "é".repeat(15)),
                len: 1201,
                max: 1024,
            }),
            "changes: unicode key over the limit, quoted to a char boundary",
            upsert(&format!("a{}", "é".repeat(600)), "Site", vec![]),
        ),
        with(
            change_err(ChangeError::ValueTooLarge {
                key: "s".into(),
                field: "s".into(),
                what: "string length",
                max: mib,
            }),
            "changes: huge string",
            upsert("s", "Slice", vec![("s", "x".repeat(mib + 1).into())]),
        ),
        with(
            change_err(ChangeError::ValueTooLarge {
                key: "s".into(),
                field: "b".into(),
                what: "bytes length",
                max: mib,
            }),
            "changes: huge bytes",
            upsert("s", "Slice", vec![("b", Value::Bytes(vec![7; mib + 1]))]),
        ),
        with(
            change_err(ChangeError::ValueTooLarge {
                key: "s".into(),
                field: "j".into(),
                what: "json length",
                max: mib,
            }),
            "changes: huge json",
            upsert(
                "s",
                "Slice",
                vec![("j", Value::Json(format!("\"{}\"", "j".repeat(mib))))],
            ),
        ),
        with(
            change_err(ChangeError::ValueTooLarge {
                key: "s".into(),
                field: "j".into(),
                what: "json depth",
                max: 64,
            }),
            "changes: deep json (within the parser's limit)",
            json(&format!(
                r#"[{{"upsert": {{"key": "s", "model": "Slice", "fields": {{"j": {}}}}}}}]"#,
                deep(100)
            )),
        ),
        with(
            change_err(ChangeError::ValueTooLarge {
                key: "s".into(),
                field: "tags".into(),
                what: "reference count",
                max: 65_536,
            }),
            "changes: million-element list",
            upsert(
                "s",
                "Slice",
                vec![("tags", Value::Refs(vec!["tag".into(); 1_000_000]))],
            ),
        ),
        with(
            change_err(ChangeError::ValueTooLarge {
                key: "s".into(),
                field: "site".into(),
                what: "reference key length",
                max: 1024,
            }),
            "changes: reference to an overlong key",
            upsert("s", "Slice", vec![("site", Value::Ref("s".repeat(2000)))]),
        ),
        Case {
            config: Some(|c| c.changes_max = 2),
            ..with(
                change_err(ChangeError::TooLarge {
                    what: "change set",
                    max: 2,
                }),
                "changes: more entries than changes_max",
                Input::Changes(vec![
                    Change::delete("a"),
                    Change::delete("b"),
                    Change::delete("c"),
                ]),
            )
        },
        Case {
            config: Some(|c| c.objects_max = 8),
            ..with(
                change_err(ChangeError::TooLarge {
                    what: "object count",
                    max: 8,
                }),
                "changes: more objects than objects_max",
                Input::Changes(vec![
                    Change::upsert("x1", "Site", Vec::<(String, Value)>::new()),
                    Change::upsert("x2", "Site", Vec::<(String, Value)>::new()),
                ]),
            )
        },
        // Snapshots (R14).
        case(
            "snapshot: empty",
            Input::Snapshot(vec![]),
            Want::Snapshot(SnapshotError::BadMagic),
            "not a syncore snapshot (bad magic)",
        ),
        case(
            "snapshot: foreign file",
            Input::Snapshot(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
            Want::Snapshot(SnapshotError::BadMagic),
            "not a syncore snapshot (bad magic)",
        ),
        case(
            "snapshot: truncated header",
            Input::Snapshot(snapshot[..12].to_vec()),
            Want::Snapshot(SnapshotError::Corrupt("truncated header".into())),
            "snapshot is corrupt: truncated header",
        ),
        case(
            "snapshot: truncated",
            Input::Snapshot(snapshot[..snapshot.len() / 2].to_vec()),
            Want::Snapshot(SnapshotError::Corrupt(
                "length does not match (truncated or extended)".into(),
            )),
            "snapshot is corrupt: length does not match (truncated or extended)",
        ),
        case(
            "snapshot: extended",
            Input::Snapshot(extended),
            Want::Snapshot(SnapshotError::Corrupt(
                "length does not match (truncated or extended)".into(),
            )),
            "snapshot is corrupt: length does not match (truncated or extended)",
        ),
        case(
            "snapshot: flipped byte",
            Input::Snapshot(flipped),
            Want::Snapshot(SnapshotError::Corrupt("checksum mismatch".into())),
            "snapshot is corrupt: checksum mismatch",
        ),
        case(
            "snapshot: from the previous version",
            Input::Snapshot(snapshot_with_version(FORMAT_VERSION - 1)),
            Want::Snapshot(SnapshotError::Version {
                found: FORMAT_VERSION - 1,
                expected: FORMAT_VERSION,
            }),
            format!(
                "snapshot format version {}, this build reads {FORMAT_VERSION}",
                FORMAT_VERSION - 1
            ),
        ),
        case(
            "snapshot: from a future version",
            Input::Snapshot(snapshot_with_version(99)),
            Want::Snapshot(SnapshotError::Version {
                found: 99,
                expected: FORMAT_VERSION,
            }),
            format!("snapshot format version 99, this build reads {FORMAT_VERSION}"),
        ),
        case(
            "snapshot: forged length inside a valid frame",
            // The schema text claims 2^39 bytes: refused, not allocated.
            Input::Snapshot(framed(&[253, 0, 0, 0, 0, 0x80, 0, 0, 0])),
            Want::Snapshot(SnapshotError::Corrupt("payload: LimitExceeded".into())),
            "snapshot is corrupt: payload: LimitExceeded",
        ),
        case(
            "snapshot: empty payload in a valid frame",
            Input::Snapshot(framed(&[])),
            Want::Snapshot(SnapshotError::Corrupt(
                "payload: UnexpectedEnd { additional: 1 }".into(),
            )),
            "snapshot is corrupt: payload: UnexpectedEnd { additional: 1 }",
        ),
        // R7: no new reference to an object being deleted (issue 10).
        case(
            "change: new reference to an object being deleted",
            upsert("slice2", "Slice", vec![("site", Value::Ref("gone".into()))]),
            Want::Change(ChangeError::ReferenceToDeleting {
                key: "slice2".into(),
                field: "site".into(),
                target: "gone".into(),
            }),
            "object slice2: field site references gone, which is being deleted",
        ),
        case(
            "change: new reference to an object the same set deletes",
            Input::Changes(vec![
                Change::delete("site"),
                Change::upsert("slice3", "Slice", [("site", "site")]),
            ]),
            Want::Change(ChangeError::ReferenceToDeleting {
                key: "slice3".into(),
                field: "site".into(),
                target: "site".into(),
            }),
            "object slice3: field site references site, which is being deleted",
        ),
        // Completions and reports.
        case(
            "complete: a task for no object",
            Input::Complete(
                Task {
                    object: ObjectId(4_000_000),
                    model: ModelId(0),
                    version: 1,
                    kind: TaskKind::Sync,
                },
                Outcome::ok(),
            ),
            Want::Complete(CompleteError::UnknownObject {
                id: 4_000_000,
                version: 1,
            }),
            "no object with id 4000000 and version 1",
        ),
        not_planned(
            "complete: a sync of an external object",
            "owner",
            None,
            0,
            TaskKind::Sync,
            "external and passive objects get no tasks (R17)",
        ),
        not_planned(
            "complete: a sync of a passive object",
            "tag",
            None,
            0,
            TaskKind::Sync,
            "external and passive objects get no tasks (R17)",
        ),
        not_planned(
            "complete: a task naming another model",
            "site",
            Some(3),
            0,
            TaskKind::Sync,
            "the object is of another model",
        ),
        not_planned(
            "complete: a version the object never had",
            "slice",
            None,
            100,
            TaskKind::Sync,
            "the object never had that version",
        ),
        not_planned(
            "complete: a delete of a live object",
            "slice",
            None,
            0,
            TaskKind::Delete,
            "the object is not being deleted",
        ),
        with(
            change_err(ChangeError::DanglingReference {
                key: "s2".into(),
                field: "site".into(),
                target: "mars".into(),
            }),
            "rows: a dangling reference in the second row",
            rows(
                "Slice",
                &["site"],
                vec![
                    ("s1", vec![Value::Ref("site".into())]),
                    ("s2", vec![Value::Ref("mars".into())]),
                ],
            ),
        ),
        with(
            change_err(ChangeError::UnknownModel {
                key: "a".into(),
                model: "Planet".into(),
            }),
            "rows: unknown model",
            rows("Planet", &[], vec![("b", vec![]), ("a", vec![])]),
        ),
        with(
            change_err(ChangeError::FeedbackWrite {
                key: "s1".into(),
                model: "Slice".into(),
                field: "state".into(),
            }),
            "rows: a feedback column (R9)",
            rows(
                "Slice",
                &["state"],
                vec![("s1", vec!["x".into()]), ("s2", vec!["y".into()])],
            ),
        ),
        with(
            change_err(ChangeError::ModelMismatch {
                key: "site".into(),
                existing: "Site".into(),
                model: "Tag".into(),
            }),
            "rows: a stored key of another model",
            rows("Tag", &[], vec![("t9", vec![]), ("site", vec![])]),
        ),
        case(
            "report: not an external object",
            Input::External("site", ExternalReport::Synced { version: 1 }),
            Want::Complete(CompleteError::NotExternal { key: "site".into() }),
            "object site is not of an external model",
        ),
        case(
            "report: unknown key",
            Input::External(
                "nobody",
                ExternalReport::Failed {
                    version: 1,
                    message: "x".into(),
                },
            ),
            Want::Complete(CompleteError::UnknownKey {
                key: "nobody".into(),
            }),
            "object nobody does not exist",
        ),
    ]
}

/// A completion row for a task the engine never planned (issue 10): the task names `key`'s
/// object, with `model` (default: its own) and its version plus `ahead`.
fn not_planned(
    name: &'static str,
    key: &str,
    model: Option<u16>,
    ahead: u64,
    kind: TaskKind,
    why: &'static str,
) -> Case {
    let e = base();
    let info = e.object(key).unwrap();
    let own = e.schema().model_id(&info.model).unwrap();
    let version = info.version + ahead;
    let task = Task {
        object: info.id,
        model: model.map_or(own, ModelId),
        version,
        kind,
    };
    case(
        name,
        Input::Complete(task, Outcome::ok()),
        Want::Complete(CompleteError::NotPlanned {
            key: key.into(),
            version,
            why,
        }),
        format!("task for {key} (version {version}) was never planned: {why}"),
    )
}

/// Runs one row; returns the error and its message, or a description of what went wrong.
fn run(case: &Case) -> Result<(), String> {
    let mut engine = base();
    if let Some(tighten) = case.config {
        let mut config = engine.config().clone();
        tighten(&mut config);
        let mut tightened = Engine::new(Schema::from_json(SCHEMA).unwrap(), config);
        // Same objects, tighter limits: the base state's objects, one change set each (in
        // key order, which is also dependency order here).
        let mut keys: Vec<String> = engine.keys().map(str::to_string).collect();
        keys.sort();
        for key in keys {
            let info = engine.object(&key).unwrap();
            let fields: BTreeMap<String, Value> = info.fields.into_iter().collect();
            let change = Change::Upsert {
                key,
                model: info.model,
                fields,
            };
            tightened
                .apply(ChangeSet::from(vec![change]))
                .map_err(|e| e.to_string())?;
        }
        engine = tightened;
    }
    let before = engine.snapshot();
    let got = match &case.input {
        Input::Schema(text) => Schema::from_json(text).err().map(Want::Schema),
        Input::ChangeJson(text) => match ChangeSet::from_json(text) {
            Err(e) => Some(Want::Change(e)),
            Ok(set) => engine.apply(set).err().map(Want::Change),
        },
        Input::Changes(changes) => engine
            .apply(ChangeSet::from(changes.clone()))
            .err()
            .map(Want::Change),
        Input::Rows(rows) => engine.apply_rows(rows.clone()).err().map(Want::Change),
        Input::Snapshot(bytes) => Engine::restore(bytes).err().map(Want::Snapshot),
        Input::Complete(task, outcome) => engine
            .complete(task, outcome.clone(), Time(5))
            .err()
            .map(Want::Complete),
        Input::External(key, report) => engine
            .report_external(key, report.clone())
            .err()
            .map(Want::Complete),
    };
    let Some(got) = got else {
        return Err("accepted".into());
    };
    let message = match &got {
        Want::Schema(e) => e.to_string(),
        Want::Change(e) => e.to_string(),
        Want::Snapshot(e) => e.to_string(),
        Want::Complete(e) => e.to_string(),
    };
    let short = |s: &str| s.chars().take(300).collect::<String>();
    if got != case.want {
        return Err(short(&format!("error {got:?}, want {:?}", case.want)));
    }
    if message != case.message {
        return Err(format!(
            "message {:?}, want {:?}",
            short(&message),
            short(&case.message)
        ));
    }
    if engine.snapshot() != before {
        return Err("the state changed".into());
    }
    Ok(())
}

#[test]
fn bad_inputs_give_exact_errors_and_change_nothing() {
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut names = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(names.insert(case.name), "case {} twice", case.name);
        if let Err(e) = run(case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The limits' defaults are the ones `Config`'s documentation states.
#[test]
fn limit_defaults_are_documented_values() {
    let c = Config::default();
    assert_eq!(
        (
            c.changes_max,
            c.key_len_max,
            c.objects_max,
            c.policy_rounds_max
        ),
        (10_000_000, 1024, 10_000_000, 16)
    );
    assert_eq!(
        (
            c.string_len_max,
            c.bytes_len_max,
            c.json_len_max,
            c.json_depth_max,
            c.refs_max
        ),
        (1 << 20, 1 << 20, 1 << 20, 64, 1 << 16)
    );
}

/// Feedback over a limit is recorded as a failure naming the field (R9's way), and never
/// stored.
#[test]
fn oversized_feedback_is_a_recorded_failure() {
    let mut engine = base();
    engine
        .apply(ChangeSet::new().upsert("fresh", "Site", Vec::<(String, Value)>::new()))
        .unwrap();
    let task = *engine
        .plan(Time(1))
        .tasks
        .iter()
        .find(|t| engine.key(t.object) == "fresh")
        .unwrap();
    let done = engine
        .complete(
            &task,
            Outcome::ok_with([("ip", "x".repeat((1 << 20) + 1))]),
            Time(1),
        )
        .unwrap();
    assert!(
        matches!(done, syncore::Completion::Failed { failures: 1, .. }),
        "{done:?}"
    );
    let info = engine.object("fresh").unwrap();
    assert_eq!(
        info.message.as_deref(),
        Some("feedback field ip: string length exceeds the limit of 1048576")
    );
    assert_eq!(info.feedback, vec![("ip".to_string(), Value::Null)]);
}

/// A policy that answers every site with `count` new tags, keyed after the site (and one
/// over-long key when `long_key` is set).
struct Spawner {
    count: usize,
    long_key: bool,
}

impl syncore::Policy for Spawner {
    fn on_change(
        &self,
        input: &syncore::PolicyInput<'_>,
        _state: &dyn syncore::StateView,
    ) -> Result<Vec<Change>, String> {
        let mut out: Vec<Change> = (0..self.count)
            .map(|i| {
                Change::upsert(
                    format!("{}-tag{i}", input.key),
                    "Tag",
                    Vec::<(String, Value)>::new(),
                )
            })
            .collect();
        if self.long_key {
            out.push(Change::upsert(
                "p".repeat(2000),
                "Tag",
                Vec::<(String, Value)>::new(),
            ));
        }
        Ok(out)
    }
}

/// Policy output counts against `changes_max` and is held to the key limit, like the
/// caller's changes (R10: it joins the same atomic change set), and nothing is applied.
#[test]
fn policy_output_is_held_to_the_same_limits() {
    for (spawner, want) in [
        (
            Spawner {
                count: 5,
                long_key: false,
            },
            ChangeError::TooLarge {
                what: "change set",
                max: 4,
            },
        ),
        (
            Spawner {
                count: 1,
                long_key: true,
            },
            ChangeError::KeyTooLong {
                prefix: "p".repeat(32),
                len: 2000,
                max: 1024,
            },
        ),
    ] {
        let config = Config {
            changes_max: 4,
            ..Config::default()
        };
        let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), config);
        engine.register_policy("Site", Box::new(spawner)).unwrap();
        let before = engine.snapshot();
        let err = engine
            .apply(ChangeSet::new().upsert("s", "Site", Vec::<(String, Value)>::new()))
            .unwrap_err();
        assert_eq!(err, want);
        assert_eq!(engine.snapshot(), before);
    }
}
