//! The dynamic Hessian value.

/// Any Hessian 2.0 value.
///
/// Shared references in the input are expanded: a value sent once and referenced again
/// decodes as two equal values. A reference to a list, map or object that contains it (a
/// cycle, such as a Java `Throwable` whose `cause` is itself) decodes as [`Value::Ref`].
/// When encoding, [`Value::Ref`] writes a back-reference, so shared and cyclic graphs can
/// be sent on purpose.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `N`, Java `null`.
    #[default]
    Null,
    /// `T` / `F`.
    Bool(bool),
    /// A 32-bit int (Java `int`, also `byte`, `short`, `char` as number).
    Int(i32),
    /// A 64-bit long.
    Long(i64),
    /// A double (Java `float` travels as double too).
    Double(f64),
    /// A string.
    String(String),
    /// Binary data (Java `byte[]`).
    Binary(Vec<u8>),
    /// A date, milliseconds since the epoch, UTC (`java.util.Date`).
    Date(i64),
    /// A list or Java array.
    List(List),
    /// A map.
    Map(Map),
    /// An instance of a class.
    Object(Object),
    /// A back-reference to the n-th list, map or object of the stream (0-based, counted
    /// in the order they begin).
    Ref(u32),
}

/// A list: Java `List`, `Set` or array.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct List {
    /// Java type (`[int`, `[string`, `java.util.HashSet` …); `None` for an untyped list
    /// (Java `ArrayList`).
    pub type_name: Option<String>,
    /// The items.
    pub items: Vec<Value>,
}

/// A map: Java `Map`, or an object sent as a map.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map {
    /// Java type (`java.util.TreeMap` …); `None` for an untyped map (Java `HashMap`).
    pub type_name: Option<String>,
    /// Entries in wire order.
    pub entries: Vec<(Value, Value)>,
}

/// An instance of a class: Java object, enum constant (`name` field), `BigDecimal`
/// (`value` field), `Throwable` (`detailMessage`, `cause`, `stackTrace` …).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    /// Fully qualified Java class name.
    pub class: String,
    /// Fields in class-definition order.
    pub fields: Vec<(String, Value)>,
}

impl Object {
    /// A new object of `class` with `fields`.
    pub fn new(class: impl Into<String>, fields: Vec<(String, Value)>) -> Object {
        Object {
            class: class.into(),
            fields,
        }
    }

    /// The value of field `name`, if present.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl Map {
    /// The value under the string key `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number as i64, if this is an int or long.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i64::from(*i)),
            Value::Long(l) => Some(*l),
            _ => None,
        }
    }

    /// The number as f64, if this is any number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(f64::from(*i)),
            Value::Long(l) => Some(*l as f64),
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// An untyped list.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(List {
            type_name: None,
            items,
        })
    }

    /// An untyped map.
    pub fn map(entries: Vec<(Value, Value)>) -> Value {
        Value::Map(Map {
            type_name: None,
            entries,
        })
    }

    /// An object of `class` with `fields`.
    pub fn object(class: impl Into<String>, fields: Vec<(&str, Value)>) -> Value {
        Value::Object(Object {
            class: class.into(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Int(i)
    }
}
impl From<i64> for Value {
    fn from(l: i64) -> Value {
        Value::Long(l)
    }
}
impl From<f64> for Value {
    fn from(d: f64) -> Value {
        Value::Double(d)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
