//! Structured values drawn from fuzz input with `arbitrary::Unstructured`: names from small
//! pools (so they collide and refer to each other), and values that favour edge cases
//! (extreme numbers, non-finite floats, empty and non-ASCII strings, invalid JSON text).
//!
//! Every function here is total: when the input runs out, `Unstructured` yields zeros and
//! empty collections, so a short input still decodes to something.

use arbitrary::Unstructured;
use syncore::{FieldType, ModelKind, Value};

/// `Result` of a draw; running out of input is not an error for these decoders.
pub type Draw<T> = arbitrary::Result<T>;

/// Every field type.
pub const FIELD_TYPES: [FieldType; 8] = [
    FieldType::Bool,
    FieldType::Int,
    FieldType::Float,
    FieldType::String,
    FieldType::Bytes,
    FieldType::Ref,
    FieldType::Refs,
    FieldType::Json,
];

/// A number in `0..n` (0 when `n` is 0).
pub fn below(u: &mut Unstructured<'_>, n: usize) -> Draw<usize> {
    if n <= 1 {
        return Ok(0);
    }
    u.int_in_range(0..=n - 1)
}

/// One of `items` (which must not be empty).
pub fn pick<'a, T>(u: &mut Unstructured<'_>, items: &'a [T]) -> Draw<&'a T> {
    Ok(&items[below(u, items.len())?])
}

/// A model kind.
pub fn kind(u: &mut Unstructured<'_>) -> Draw<ModelKind> {
    Ok(*pick(
        u,
        &[
            ModelKind::Actuated,
            ModelKind::Actuated,
            ModelKind::External,
            ModelKind::Passive,
        ],
    )?)
}

/// A field type.
pub fn field_type(u: &mut Unstructured<'_>) -> Draw<FieldType> {
    Ok(*pick(u, &FIELD_TYPES)?)
}

/// A name from `pool` mostly, sometimes an odd one (empty, non-ASCII, long, or arbitrary).
pub fn name(u: &mut Unstructured<'_>, pool: &[&str]) -> Draw<String> {
    Ok(match u.int_in_range(0u8..=15)? {
        0 => String::new(),
        1 => "ключ-é-🦀".to_string(),
        2 => "x".repeat(below(u, 2000)?),
        3 => u.arbitrary::<String>()?,
        _ => pick(u, pool)?.to_string(),
    })
}

/// An arbitrary string, short.
pub fn text(u: &mut Unstructured<'_>) -> Draw<String> {
    let s: String = u.arbitrary()?;
    Ok(s.chars().take(64).collect())
}

/// A JSON document up to `depth` deep.
pub fn json(u: &mut Unstructured<'_>, depth: u32) -> Draw<serde_json::Value> {
    use serde_json::Value as J;
    let top = if depth == 0 { 3 } else { 5 };
    Ok(match u.int_in_range(0..=top)? {
        0 => J::Null,
        1 => J::Bool(u.arbitrary()?),
        2 => match u.int_in_range(0u8..=3)? {
            0 => J::from(u.arbitrary::<i64>()?),
            1 => J::from(u.arbitrary::<u64>()?),
            2 => serde_json::Number::from_f64(u.arbitrary()?).map_or(J::Null, J::Number),
            _ => J::from(i64::from(u.arbitrary::<i8>()?)),
        },
        3 => J::String(text(u)?),
        4 => {
            let n = below(u, 4)?;
            J::Array((0..n).map(|_| json(u, depth - 1)).collect::<Draw<_>>()?)
        }
        _ => {
            let n = below(u, 4)?;
            let mut map = serde_json::Map::new();
            for _ in 0..n {
                map.insert(text(u)?, json(u, depth - 1)?);
            }
            J::Object(map)
        }
    })
}

/// A value of any variant, keys of references drawn from `keys`.
pub fn value(u: &mut Unstructured<'_>, keys: &[&str]) -> Draw<Value> {
    Ok(match u.int_in_range(0u8..=12)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Int(*pick(u, &[0, -1, 1, i64::MIN, i64::MAX])?),
        3 => Value::Int(u.arbitrary()?),
        4 => Value::Float(*pick(
            u,
            &[
                0.0,
                -0.0,
                1.5,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MAX,
                f64::MIN_POSITIVE,
            ],
        )?),
        5 => Value::Float(u.arbitrary()?),
        6 => Value::Str(text(u)?),
        7 => {
            let n = below(u, 16)?;
            Value::Bytes(u.bytes(n)?.to_vec())
        }
        8 => Value::Ref(name(u, keys)?),
        9 => {
            let n = below(u, 4)?;
            Value::Refs((0..n).map(|_| name(u, keys)).collect::<Draw<_>>()?)
        }
        10 => Value::Json(serde_json::to_string(&json(u, 3)?).unwrap_or_default()),
        11 => Value::Json(text(u)?), // not necessarily JSON: the engine must cope
        _ => Value::Str(name(u, keys)?),
    })
}
