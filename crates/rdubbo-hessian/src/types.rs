//! Java types with a fixed Hessian form.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::ser::DATE_TOKEN;
use crate::value::{List, Object, Value};

/// `java.util.Date`: milliseconds since the epoch, UTC. Written as a Hessian date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Date(pub i64);

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(DATE_TOKEN, &self.0)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Date;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a date")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Date, D::Error> {
                i64::deserialize(d).map(Date)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Date, E> {
                Ok(Date(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Date, E> {
                i64::try_from(v).map(Date).map_err(E::custom)
            }
        }
        d.deserialize_newtype_struct(DATE_TOKEN, V)
    }
}

/// `byte[]`: written as Hessian binary (a plain `Vec<u8>` is written as a list of ints).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("binary data")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Bytes, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<i32>()? {
                    out.push(b as u8);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// `java.math.BigDecimal`, which Hessian sends as an object with one string field `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename = "java.math.BigDecimal")]
pub struct BigDecimal {
    /// The decimal in Java's `toString()` form, e.g. `"12.50"`.
    pub value: String,
}

impl BigDecimal {
    /// A decimal from its text.
    pub fn new(value: impl Into<String>) -> BigDecimal {
        BigDecimal {
            value: value.into(),
        }
    }
}

/// One frame of a Java stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StackFrame {
    /// Class of the method.
    pub declaring_class: String,
    /// Method name.
    pub method_name: String,
    /// Source file, if known.
    pub file_name: Option<String>,
    /// Line number (negative when unknown).
    pub line_number: i32,
}

/// A Java `Throwable` as Hessian carries it: an object of the exception's class with the
/// fields `detailMessage`, `cause`, `stackTrace` (and more that are ignored here).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Throwable {
    /// The exception class, e.g. `java.lang.IllegalArgumentException`.
    pub class: String,
    /// `getMessage()`.
    pub message: Option<String>,
    /// The stack trace, innermost first.
    pub stack_trace: Vec<StackFrame>,
    /// The cause, when it is not the exception itself.
    pub cause: Option<Box<Throwable>>,
}

impl Throwable {
    /// A throwable of `class` with `message` and no stack.
    pub fn new(class: impl Into<String>, message: impl Into<String>) -> Throwable {
        Throwable {
            class: class.into(),
            message: Some(message.into()),
            ..Throwable::default()
        }
    }

    /// Reads a throwable from a decoded object; None if `value` is not an object with a
    /// `detailMessage` or `stackTrace` field.
    pub fn from_value(value: &Value) -> Option<Throwable> {
        let Value::Object(o) = value else {
            return None;
        };
        if o.field("detailMessage").is_none() && o.field("stackTrace").is_none() {
            return None;
        }
        let message = o
            .field("detailMessage")
            .and_then(Value::as_str)
            .map(str::to_string);
        let stack_trace = match o.field("stackTrace") {
            Some(Value::List(l)) => l
                .items
                .iter()
                .filter_map(|f| match f {
                    Value::Object(f) => Some(StackFrame {
                        declaring_class: text(f, "declaringClass"),
                        method_name: text(f, "methodName"),
                        file_name: f
                            .field("fileName")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        line_number: f.field("lineNumber").and_then(Value::as_i64).unwrap_or(-1)
                            as i32,
                    }),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let cause = o
            .field("cause")
            .and_then(Throwable::from_value)
            .map(Box::new);
        Some(Throwable {
            class: o.class.clone(),
            message,
            stack_trace,
            cause,
        })
    }

    /// The object Java's Hessian deserializer turns back into this exception.
    pub fn to_value(&self) -> Value {
        let frames = self
            .stack_trace
            .iter()
            .map(|f| {
                Value::object(
                    "java.lang.StackTraceElement",
                    vec![
                        ("declaringClass", Value::from(f.declaring_class.as_str())),
                        ("methodName", Value::from(f.method_name.as_str())),
                        (
                            "fileName",
                            f.file_name.as_deref().map_or(Value::Null, Value::from),
                        ),
                        ("lineNumber", Value::Int(f.line_number)),
                    ],
                )
            })
            .collect();
        Value::Object(Object {
            class: self.class.clone(),
            fields: vec![
                (
                    "detailMessage".into(),
                    self.message.as_deref().map_or(Value::Null, Value::from),
                ),
                (
                    "cause".into(),
                    self.cause.as_ref().map_or(Value::Null, |c| c.to_value()),
                ),
                (
                    "stackTrace".into(),
                    Value::List(List {
                        type_name: Some("[java.lang.StackTraceElement".into()),
                        items: frames,
                    }),
                ),
            ],
        })
    }
}

fn text(o: &Object, field: &str) -> String {
    o.field(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl std::fmt::Display for Throwable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{}: {}", self.class, m),
            None => f.write_str(&self.class),
        }
    }
}
