//! Helpers on the generated WIT types: reading fields, building values, outcomes and
//! changes.

use crate::{Change, Dependency, Field, ObjectView, Outcome, PolicyInput, Upsert, Value};

/// Finds a field by name in a list of fields.
fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a Value> {
    fields.iter().find(|f| f.name == name).map(|f| &f.value)
}

/// Turns `(name, value)` pairs into a list of fields, in the order given.
///
/// # Examples
/// ```
/// use syncore_plugin_sdk::{fields, Value};
/// let f = fields([("ip", Value::from("10.0.0.1")), ("mtu", Value::from(1500))]);
/// assert_eq!(f[1].name, "mtu");
/// ```
pub fn fields<K: Into<String>, V: Into<Value>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<Field> {
    pairs
        .into_iter()
        .map(|(name, value)| Field {
            name: name.into(),
            value: value.into(),
        })
        .collect()
}

impl Value {
    /// A reference to one object (`ref` fields).
    pub fn reference(key: impl Into<String>) -> Value {
        Value::Reference(key.into())
    }

    /// References to several objects (`refs` fields).
    pub fn references<K: Into<String>>(keys: impl IntoIterator<Item = K>) -> Value {
        Value::References(keys.into_iter().map(Into::into).collect())
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The text of a `text`, `reference` or `json` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Reference(s) | Value::Json(s) => Some(s),
            _ => None,
        }
    }

    /// The integer of an `integer` value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The number of an `integer` or `float` value, as a float.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// The boolean of a `boolean` value.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The keys a `reference` or `references` value names (empty for anything else).
    pub fn keys(&self) -> &[String] {
        match self {
            Value::Reference(k) => std::slice::from_ref(k),
            Value::References(ks) => ks,
            _ => &[],
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Text(s.clone())
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Integer(i64::from(i))
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Self {
        Value::Integer(i64::from(i))
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(b)
    }
}

impl ObjectView {
    /// A declarative field by name (`None` if the model has no such field).
    pub fn field(&self, name: &str) -> Option<&Value> {
        find(&self.fields, name)
    }

    /// The text of a declarative `string`, `ref` or `json` field (`None` if absent or null).
    pub fn field_str(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(Value::as_str)
    }

    /// A feedback field by name, as last recorded by this object's actuator.
    pub fn feedback(&self, name: &str) -> Option<&Value> {
        find(&self.feedback, name)
    }

    /// The dependency with this key, if this object links to it.
    pub fn dependency(&self, key: &str) -> Option<&Dependency> {
        self.dependencies.iter().find(|d| d.key == key)
    }

    /// The dependencies of one model.
    pub fn dependencies_of<'a>(
        &'a self,
        model: &'a str,
    ) -> impl Iterator<Item = &'a Dependency> + 'a {
        self.dependencies.iter().filter(move |d| d.model == model)
    }
}

impl Dependency {
    /// A feedback field of the dependency by name.
    pub fn feedback(&self, name: &str) -> Option<&Value> {
        find(&self.feedback, name)
    }
}

impl PolicyInput {
    /// A declarative field by name, as the change set leaves it.
    pub fn field(&self, name: &str) -> Option<&Value> {
        find(&self.fields, name)
    }

    /// Keys of the live referrers of one model, sorted.
    pub fn referrers_of<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.referrers
            .iter()
            .filter(move |r| r.model == model)
            .map(|r| r.key.as_str())
    }
}

impl Outcome {
    /// `ok` with no feedback.
    pub fn ok() -> Outcome {
        Outcome::Ok(Vec::new())
    }

    /// `ok` with feedback fields.
    ///
    /// # Examples
    /// ```
    /// use syncore_plugin_sdk::Outcome;
    /// let done = Outcome::ok_with([("id", "site-1-7f3a")]);
    /// assert!(matches!(done, Outcome::Ok(f) if f[0].name == "id"));
    /// ```
    pub fn ok_with<K: Into<String>, V: Into<Value>>(
        feedback: impl IntoIterator<Item = (K, V)>,
    ) -> Outcome {
        Outcome::Ok(crate::fields(feedback))
    }

    /// `failed` with a message for the operator.
    pub fn failed(message: impl Into<String>) -> Outcome {
        Outcome::Failed(message.into())
    }

    /// `deferred` with a message for the operator.
    pub fn deferred(message: impl Into<String>) -> Outcome {
        Outcome::Deferred(message.into())
    }
}

impl Change {
    /// Creates or updates an object's declarative fields.
    ///
    /// # Examples
    /// ```
    /// use syncore_plugin_sdk::{Change, Value};
    /// let c = Change::upsert("net-1-port", "Port", [("network", Value::reference("net-1"))]);
    /// assert!(matches!(c, Change::Upsert(u) if u.model == "Port"));
    /// ```
    pub fn upsert<K: Into<String>, V: Into<Value>>(
        key: impl Into<String>,
        model: impl Into<String>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Change {
        Change::Upsert(Upsert {
            key: key.into(),
            model: model.into(),
            fields: crate::fields(fields),
        })
    }

    /// Deletes the object with `key`.
    pub fn delete(key: impl Into<String>) -> Change {
        Change::Delete(key.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_name() {
        let view = ObjectView {
            key: "n1".into(),
            model: "Network".into(),
            version: 3,
            fields: fields([
                ("name", Value::from("blue")),
                ("site", Value::reference("s1")),
            ]),
            feedback: fields([("id", Value::from(7))]),
            dependencies: vec![Dependency {
                key: "s1".into(),
                model: "Site".into(),
                version: 1,
                feedback: fields([("id", Value::from("site-9"))]),
            }],
        };
        assert_eq!(view.field_str("site"), Some("s1"));
        assert_eq!(view.feedback("id").and_then(Value::as_int), Some(7));
        assert_eq!(view.field("id"), None);
        let site = view.dependencies_of("Site").next().unwrap();
        assert_eq!(site.feedback("id").and_then(Value::as_str), Some("site-9"));
    }
}
