//! Field values: what declarative and feedback fields hold.
//!
//! A [`Value`] is typed by the schema's [`FieldType`]. JSON input is loose (a key is a
//! string, a list of keys an array), so values read from JSON are coerced to the field's
//! type when a change set is applied; programmatic callers can build typed values directly.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a declarative or feedback field.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// `true` or `false`.
    Bool,
    /// A signed 64-bit integer.
    Int,
    /// A 64-bit float (finite).
    Float,
    /// A UTF-8 string.
    String,
    /// Raw bytes (JSON: an array of integers 0..=255).
    Bytes,
    /// The key of one object of the link's target model (a link field).
    Ref,
    /// The keys of several objects of the link's target model (a many-valued link field).
    Refs,
    /// A free-form JSON value (maps, lists, anything).
    Json,
}

impl FieldType {
    /// Whether fields of this type can carry a link.
    pub fn is_reference(self) -> bool {
        matches!(self, FieldType::Ref | FieldType::Refs)
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FieldType::Bool => "bool",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::String => "string",
            FieldType::Bytes => "bytes",
            FieldType::Ref => "ref",
            FieldType::Refs => "refs",
            FieldType::Json => "json",
        };
        f.write_str(name)
    }
}

/// A field value.
///
/// `Null` fits every type (a null link is no dependency, R1). `Json` holds canonical JSON
/// text (object keys sorted), so equal documents compare equal and encode to equal bytes.
///
/// # Examples
/// ```
/// use syncore::{FieldType, Value};
/// let v = Value::from("site-1").coerce(FieldType::Ref).unwrap();
/// assert_eq!(v, Value::Ref("site-1".into()));
/// ```
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode, Default)]
pub enum Value {
    /// No value.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A reference to one object, by key.
    Ref(String),
    /// References to several objects, by key.
    Refs(Vec<String>),
    /// Canonical JSON text.
    Json(String),
}

/// A value does not fit a field's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeMismatch {
    /// The type the field wants.
    pub expected: FieldType,
    /// What was given, in a few words.
    pub found: String,
}

impl Value {
    /// A short name of this value's shape, used in error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Ref(_) => "ref",
            Value::Refs(_) => "refs",
            Value::Json(_) => "json",
        }
    }

    /// Converts this value to `ty`, accepting the loose forms JSON input produces
    /// (a string for a `ref`, a JSON array of strings for `refs`, an integer for a `float`,
    /// any value for `json`).
    ///
    /// # Errors
    /// [`TypeMismatch`] when the value cannot represent `ty`.
    pub fn coerce(self, ty: FieldType) -> Result<Value, TypeMismatch> {
        let mismatch = |v: &Value| TypeMismatch {
            expected: ty,
            found: v.kind_name().to_string(),
        };
        Ok(match (ty, self) {
            (_, Value::Null) => Value::Null,
            (FieldType::Bool, v @ Value::Bool(_)) => v,
            (FieldType::Int, v @ Value::Int(_)) => v,
            (FieldType::Float, Value::Int(i)) => Value::Float(i as f64),
            (FieldType::Float, Value::Float(x)) if x.is_finite() => Value::Float(x),
            (FieldType::Float, Value::Float(_)) => {
                return Err(TypeMismatch {
                    expected: ty,
                    found: "non-finite float".into(),
                })
            }
            (FieldType::String, v @ Value::Str(_)) => v,
            (FieldType::Bytes, v @ Value::Bytes(_)) => v,
            (FieldType::Bytes, Value::Json(text)) => {
                let parsed: Result<Vec<u8>, _> = serde_json::from_str(&text);
                match parsed {
                    Ok(bytes) => Value::Bytes(bytes),
                    Err(_) => {
                        return Err(TypeMismatch {
                            expected: ty,
                            found: "json".into(),
                        })
                    }
                }
            }
            (FieldType::Ref, Value::Str(s) | Value::Ref(s)) => Value::Ref(s),
            (FieldType::Refs, v @ Value::Refs(_)) => v,
            (FieldType::Refs, Value::Json(text)) => {
                let parsed: Result<Vec<String>, _> = serde_json::from_str(&text);
                match parsed {
                    Ok(keys) => Value::Refs(keys),
                    Err(_) => {
                        return Err(TypeMismatch {
                            expected: ty,
                            found: "json".into(),
                        })
                    }
                }
            }
            (FieldType::Json, v) => Value::Json(canonical_json(&v.to_json())),
            (_, v) => return Err(mismatch(&v)),
        })
    }

    /// This value as JSON (the natural form: refs as strings, bytes as integers).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
            Value::Str(s) | Value::Ref(s) => J::String(s.clone()),
            Value::Bytes(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
            Value::Refs(keys) => J::Array(keys.iter().cloned().map(J::String).collect()),
            Value::Json(text) => serde_json::from_str(text).unwrap_or(J::Null),
        }
    }

    /// Reads a value from JSON in its loose form: arrays and objects become [`Value::Json`]
    /// until [`Value::coerce`] gives them the field's type.
    pub fn from_json(json: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            other => Value::Json(canonical_json(other)),
        }
    }

    /// Whether this value is already of type `ty`: what `self.clone().coerce(ty) ==
    /// Ok(self)` says, without the copy (a restored snapshot is checked value by value).
    pub(crate) fn has_type(&self, ty: FieldType) -> bool {
        match (ty, self) {
            (_, Value::Null)
            | (FieldType::Bool, Value::Bool(_))
            | (FieldType::Int, Value::Int(_))
            | (FieldType::String, Value::Str(_))
            | (FieldType::Bytes, Value::Bytes(_))
            | (FieldType::Ref, Value::Ref(_))
            | (FieldType::Refs, Value::Refs(_)) => true,
            (FieldType::Float, Value::Float(x)) => x.is_finite(),
            (FieldType::Json, Value::Json(text)) => canonical_json(&self.to_json()) == *text,
            _ => false,
        }
    }

    /// The keys this value references (empty unless `Ref` or `Refs`).
    pub fn refs(&self) -> &[String] {
        match self {
            Value::Ref(k) => std::slice::from_ref(k),
            Value::Refs(ks) => ks,
            _ => &[],
        }
    }
}

/// Size limits on one value (the engine's `Config` `*_max` options, in bytes or counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ValueLimits {
    /// Longest `Str`, in bytes.
    pub string_len_max: usize,
    /// Longest `Bytes`.
    pub bytes_len_max: usize,
    /// Longest `Json` text (canonical), in bytes.
    pub json_len_max: usize,
    /// Deepest nesting of arrays and objects in a `Json` value.
    pub json_depth_max: usize,
    /// Most keys in one `Refs`.
    pub refs_max: usize,
    /// Longest key inside a `Ref` or `Refs`, in bytes.
    pub key_len_max: usize,
}

/// A value over one of its [`ValueLimits`]: what is too large, and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exceeded {
    /// What is too large, in words ("string length").
    pub what: &'static str,
    /// The limit.
    pub max: usize,
}

impl Value {
    /// Checks this value against `limits`, in time linear in its size and without recursion
    /// (a JSON text's depth is counted by scanning it).
    pub(crate) fn check_limits(&self, limits: &ValueLimits) -> Result<(), Exceeded> {
        let over = |what, len: usize, max: usize| {
            if len > max {
                Err(Exceeded { what, max })
            } else {
                Ok(())
            }
        };
        match self {
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => Ok(()),
            Value::Str(s) => over("string length", s.len(), limits.string_len_max),
            Value::Bytes(b) => over("bytes length", b.len(), limits.bytes_len_max),
            Value::Ref(k) => over("reference key length", k.len(), limits.key_len_max),
            Value::Refs(ks) => {
                over("reference count", ks.len(), limits.refs_max)?;
                ks.iter()
                    .try_for_each(|k| over("reference key length", k.len(), limits.key_len_max))
            }
            Value::Json(text) => {
                over("json length", text.len(), limits.json_len_max)?;
                over("json depth", json_depth(text), limits.json_depth_max)
            }
        }
    }
}

/// The deepest nesting of arrays and objects in JSON text (0 for a scalar), counted by a
/// scan that skips string contents; for text that is not JSON, a count of the same kind.
pub(crate) fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Canonical JSON text: serde_json's default map is ordered, so keys come out sorted.
fn canonical_json(json: &serde_json::Value) -> String {
    serde_json::to_string(json).unwrap_or_else(|_| "null".to_string())
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = serde_json::Value::deserialize(deserializer)?;
        Ok(Value::from_json(&json))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_arrays_coerce_to_refs_and_bytes() {
        let v = Value::from_json(&serde_json::json!(["a", "b"]));
        assert_eq!(
            v.clone().coerce(FieldType::Refs).unwrap(),
            Value::Refs(vec!["a".into(), "b".into()])
        );
        assert!(v.coerce(FieldType::Bytes).is_err());
        let b = Value::from_json(&serde_json::json!([1, 255]));
        assert_eq!(
            b.coerce(FieldType::Bytes).unwrap(),
            Value::Bytes(vec![1, 255])
        );
    }

    #[test]
    fn json_fields_are_canonical() {
        let a = Value::from_json(&serde_json::json!({"b": 1, "a": [true]}));
        let b = Value::from_json(&serde_json::json!({"a": [true], "b": 1}));
        assert_eq!(
            a.coerce(FieldType::Json).unwrap(),
            b.coerce(FieldType::Json).unwrap()
        );
    }

    /// A coerced JSON value is canonical, so a snapshot holding it restores: its text
    /// parses and prints back to itself. Floats need correctly rounded parsing for that
    /// (`serde_json`'s `float_roundtrip`); this text once printed back one digit off.
    #[test]
    fn coerced_json_is_its_own_canonical_form() {
        for text in [
            "-2.4382915515851114e-11",
            "[0.1,1e300,-0.0,5e-324]",
            "{\"a\":2.5e-8}",
        ] {
            let v = Value::Json(text.into()).coerce(FieldType::Json).unwrap();
            assert!(
                v.has_type(FieldType::Json),
                "{text} -> {v:?} is not canonical"
            );
        }
    }

    proptest::proptest! {
        /// Any finite float, as JSON, is canonical after one coercion.
        #[test]
        fn floats_as_json_are_canonical(x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let v = Value::Float(x).coerce(FieldType::Json).unwrap();
            proptest::prop_assert!(v.has_type(FieldType::Json), "{x:e} -> {v:?}");
            let nested = Value::Json(format!("[{x:e},{{\"x\":{x:?}}}]")).coerce(FieldType::Json).unwrap();
            proptest::prop_assert!(nested.has_type(FieldType::Json), "{nested:?}");
        }
    }

    #[test]
    fn json_depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth(r#"[1,{"a":[2]}]"#), 3);
        assert_eq!(json_depth(r#"["[[[", "\\", "\"{", {"}": 1}]"#), 2);
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(json_depth(&deep), 100);
    }

    #[test]
    fn limits_name_what_is_too_large() {
        let limits = ValueLimits {
            string_len_max: 3,
            bytes_len_max: 2,
            json_len_max: 10,
            json_depth_max: 2,
            refs_max: 2,
            key_len_max: 4,
        };
        let check = |v: Value| v.check_limits(&limits).err().map(|e| (e.what, e.max));
        assert_eq!(check(Value::Str("abc".into())), None);
        assert_eq!(check(Value::Str("abcd".into())), Some(("string length", 3)));
        assert_eq!(check(Value::Bytes(vec![0; 3])), Some(("bytes length", 2)));
        assert_eq!(
            check(Value::Ref("kkkkk".into())),
            Some(("reference key length", 4))
        );
        let refs = |n| Value::Refs((0..n).map(|i| format!("k{i}")).collect());
        assert_eq!(check(refs(2)), None);
        assert_eq!(check(refs(3)), Some(("reference count", 2)));
        assert_eq!(
            check(Value::Json("[[[1]]]".into())),
            Some(("json depth", 2))
        );
        assert_eq!(
            check(Value::Json("\"0123456789\"".into())),
            Some(("json length", 10))
        );
        assert_eq!(check(Value::Int(i64::MAX)), None);
    }

    #[test]
    fn mismatches_name_both_types() {
        let err = Value::Bool(true).coerce(FieldType::Int).unwrap_err();
        assert_eq!(err.expected, FieldType::Int);
        assert_eq!(err.found, "bool");
        let nan = Value::Float(f64::NAN).coerce(FieldType::Float).unwrap_err();
        assert_eq!(nan.found, "non-finite float");
    }
}
