//! The dynamic Hessian value.

/// Any Hessian 2.0 value.
///
/// Lossless: every Java type Hessian carries keeps its form (int vs long, a typed list
/// `[int` vs a `java.util.HashSet`, map keys of any type, an object's class and field
/// order). Shared references in the input stay shared: a value sent once and referenced
/// again decodes as the value, then [`Value::Ref`] to it, as does a cycle (a Java
/// `Throwable` whose `cause` is itself). Encoding writes [`Value::Ref`] as a
/// back-reference, so a decoded graph re-encodes to the same bytes. [`Value::resolve`]
/// finds what a reference points at.
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

impl Value {
    /// The list, map or object that [`Value::Ref`]`(index)` points at in a stream whose
    /// values are `roots` (containers are numbered in the order they begin, depth first,
    /// across all the roots: the numbering of one Hessian stream, such as a Dubbo body's
    /// arguments).
    pub fn resolve(roots: &[Value], index: u32) -> Option<&Value> {
        fn walk<'a>(v: &'a Value, index: u32, seen: &mut u32) -> Option<&'a Value> {
            let children: Box<dyn Iterator<Item = &'a Value> + 'a> = match v {
                Value::List(l) => Box::new(l.items.iter()),
                Value::Map(m) => Box::new(m.entries.iter().flat_map(|(k, v)| [k, v])),
                Value::Object(o) => Box::new(o.fields.iter().map(|(_, v)| v)),
                _ => return None,
            };
            if *seen == index {
                return Some(v);
            }
            *seen += 1;
            for c in children {
                if let Some(found) = walk(c, index, seen) {
                    return Some(found);
                }
            }
            None
        }
        let mut seen = 0;
        roots.iter().find_map(|r| walk(r, index, &mut seen))
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Int(i32::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        i32::try_from(v).map_or(Value::Long(i64::from(v)), Value::Int)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        i32::try_from(v).map_or(Value::Long(v as i64), Value::Int)
    }
}
impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Value {
        Value::list(items)
    }
}

impl Value {
    /// The number as u64, if this is a non-negative int or long.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i64().and_then(|i| u64::try_from(i).ok())
    }
    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}
