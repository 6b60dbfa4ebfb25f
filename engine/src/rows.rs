//! [`Rows`]: many upserts of one model, values by column, for loading a large graph.
//!
//! A [`ChangeSet`] holds a map of field names per upsert, which is simple for small changes
//! and costs a few hundred bytes per entry. `Rows` names the fields once and keeps every
//! key in one buffer and every value in one array, so a million objects are loaded without
//! a million maps. [`Engine::apply_rows`](crate::Engine::apply_rows) applies it with the
//! same result as the equivalent `ChangeSet` (property-tested).

use crate::change::{Change, ChangeSet};
use crate::error::ChangeError;
use crate::value::Value;

/// Upserts of one model with the same declarative fields: each row is a key and one value
/// per column (a row sets every column, as an upsert listing those fields does).
///
/// # Example
/// ```
/// use syncore::{Config, Engine, Rows, Schema, Value};
///
/// let schema = Schema::from_json(r#"{"models": [{"name": "Node",
///     "fields": [{"name": "deps", "type": "refs"}],
///     "links": [{"field": "deps", "target": "Node"}]}]}"#).unwrap();
/// let mut engine = Engine::new(schema, Config::default());
/// let mut rows = Rows::new("Node", ["deps"]).unwrap();
/// rows.push("a", [Value::Refs(vec![])]).unwrap();
/// rows.push("b", [Value::Refs(vec!["a".into()])]).unwrap();
/// let report = engine.apply_rows(rows).unwrap();
/// assert_eq!(report.changed, ["a", "b"]);
/// assert_eq!(engine.plan(syncore::Time(0)).wave_count(), 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Rows {
    model: String,
    columns: Vec<String>,
    /// Every key, back to back; row `i`'s key ends at `key_ends[i]`.
    keys: String,
    key_ends: Vec<usize>,
    /// Row-major: row `i`'s values are `values[i * columns.len()..][..columns.len()]`.
    values: Vec<Value>,
}

impl Rows {
    /// Rows of `model` setting the fields `columns`, in that order.
    ///
    /// # Errors
    /// [`ChangeError::DuplicateColumn`] when a field is named twice (which value would win
    /// should not depend on the order).
    pub fn new(
        model: impl Into<String>,
        columns: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Rows, ChangeError> {
        let model = model.into();
        let columns: Vec<String> = columns.into_iter().map(Into::into).collect();
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(ChangeError::DuplicateColumn {
                    model,
                    field: c.clone(),
                });
            }
        }
        Ok(Rows {
            model,
            columns,
            keys: String::new(),
            key_ends: Vec::new(),
            values: Vec::new(),
        })
    }

    /// Room for `rows` more rows whose keys take `key_bytes` bytes in all.
    pub fn reserve(&mut self, rows: usize, key_bytes: usize) {
        self.keys.reserve(key_bytes);
        self.key_ends.reserve(rows);
        self.values.reserve(rows.saturating_mul(self.columns.len()));
    }

    /// Adds a row: `key` and one value per column, in column order.
    ///
    /// # Errors
    /// [`ChangeError::RowLength`] when the row has more or fewer values than columns; the
    /// rows are unchanged.
    pub fn push(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<&mut Rows, ChangeError> {
        let start = self.values.len();
        self.values.extend(values);
        let found = self.values.len() - start;
        if found != self.columns.len() {
            self.values.truncate(start);
            return Err(ChangeError::RowLength {
                key: key.to_string(),
                model: self.model.clone(),
                columns: self.columns.len(),
                values: found,
            });
        }
        self.keys.push_str(key);
        self.key_ends.push(self.keys.len());
        Ok(self)
    }

    /// The model every row upserts.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The fields each row sets, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    /// Row `i`'s key, or `None` past the last row.
    pub fn key(&self, i: usize) -> Option<&str> {
        (i < self.len()).then(|| self.key_at(i))
    }

    /// Row `i`'s values in column order, or `None` past the last row.
    pub fn values(&self, i: usize) -> Option<&[Value]> {
        (i < self.len()).then(|| self.values_at(i))
    }

    /// Row `i`'s key (`i` is a row).
    pub(crate) fn key_at(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.keys[start..self.key_ends[i]]
    }

    /// Row `i`'s values (`i` is a row).
    pub(crate) fn values_at(&self, i: usize) -> &[Value] {
        let w = self.columns.len();
        &self.values[i * w..(i + 1) * w]
    }

    /// Row `i`'s values, to coerce or move out (`i` is a row; the bulk path).
    pub(crate) fn values_mut(&mut self, i: usize) -> &mut [Value] {
        let w = self.columns.len();
        &mut self.values[i * w..(i + 1) * w]
    }
}

/// The same upserts as a change set, one entry per row in row order.
impl From<Rows> for ChangeSet {
    fn from(rows: Rows) -> ChangeSet {
        let Rows {
            model,
            columns,
            keys,
            key_ends,
            values,
        } = rows;
        let w = columns.len();
        let mut values = values.into_iter();
        let mut start = 0;
        let changes = key_ends
            .iter()
            .map(|&end| {
                let key = &keys[start..end];
                start = end;
                let fields = columns.iter().cloned().zip(values.by_ref().take(w));
                Change::upsert(key, model.clone(), fields.collect::<Vec<_>>())
            })
            .collect();
        ChangeSet { changes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_of_the_wrong_length_is_refused_and_changes_nothing() {
        let mut rows = Rows::new("Node", ["a", "b"]).unwrap();
        rows.push("k1", [Value::Int(1), Value::Int(2)]).unwrap();
        let before = rows.clone();
        let err = rows.push("k2", [Value::Int(1)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "object k2: a Node row of 2 columns was given 1 value"
        );
        let err = rows.push("k3", vec![Value::Null; 3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "object k3: a Node row of 2 columns was given 3 values"
        );
        assert_eq!(rows, before);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows.key(0), Some("k1"));
        assert_eq!(rows.values(0), Some(&[Value::Int(1), Value::Int(2)][..]));
        assert_eq!((rows.key(1), rows.values(1)), (None, None));
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        let err = Rows::new("Node", ["a", "b", "a"]).unwrap_err();
        assert_eq!(err.to_string(), "Node rows name field a twice");
    }

    #[test]
    fn rows_become_the_same_upserts() {
        let mut rows = Rows::new("Node", ["x"]).unwrap();
        rows.push("b", [Value::Int(2)]).unwrap();
        rows.push("a", [Value::Null]).unwrap();
        let set = ChangeSet::from(rows);
        let want = ChangeSet::new()
            .upsert("b", "Node", [("x", Value::Int(2))])
            .upsert("a", "Node", [("x", Value::Null)]);
        assert_eq!(set, want);
    }
}
