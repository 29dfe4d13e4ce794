//! Hessian 2.0 serialization, wire-compatible with Caucho Hessian (`Hessian2Output` /
//! `Hessian2Input`) and Dubbo's hessian-lite.
//!
//! - serde: [`to_bytes`] / [`from_slice`], or [`Encoder::write`] / [`Decoder::read`] for a
//!   stream of several values sharing class definitions and references (a Dubbo body).
//! - dynamic: [`Value`], with [`encode_value`] / [`decode_value`],
//!   [`Encoder::write_value`] / [`Decoder::read_value`].
//! - Java types with a fixed form: [`Date`], [`Bytes`] (`byte[]`), [`BigDecimal`],
//!   [`Throwable`].
//!
//! Every compact form of the spec is read; the writer picks the same form Caucho's writer
//! does, so values with one canonical form are byte-identical to Java's. Strings count
//! their length in UTF-16 units and write characters outside the BMP as two 3-byte
//! surrogates, as Java does; 4-byte UTF-8 is accepted when reading.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! #[serde(rename = "com.example.User")]
//! struct User {
//!     name: String,
//!     age: i32,
//!     tags: Vec<String>,
//! }
//!
//! let user = User { name: "ann".into(), age: 42, tags: vec!["admin".into()] };
//! let bytes = rdubbo_hessian::to_bytes(&user).unwrap();
//! assert_eq!(bytes[0], b'C'); // class definition of com.example.User first
//! let back: User = rdubbo_hessian::from_slice(&bytes).unwrap();
//! assert_eq!(back, user);
//!
//! // The same bytes as a dynamic value:
//! let v = rdubbo_hessian::decode_value(&bytes).unwrap();
//! let rdubbo_hessian::Value::Object(o) = v else { panic!() };
//! assert_eq!(o.class, "com.example.User");
//! assert_eq!(o.field("age"), Some(&rdubbo_hessian::Value::Int(42)));
//! ```
#![warn(missing_docs)]

mod de;
mod decode;
mod encode;
mod error;
mod ser;
mod types;
mod value;
mod value_serde;
pub mod with;

pub use de::from_slice;
pub use decode::{decode_value, Decoder, MapReader, DEFAULT_MAX_DEPTH};
pub use encode::{encode_value, Encoder};
pub use error::{Error, Result};
pub use ser::{to_bytes, to_encoder, Compound, StructSerializer, VariantSerializer};
pub use types::{BigDecimal, Bytes, Date, StackFrame, Throwable};
pub use value::{List, Map, Object, Value};
pub use value_serde::{base64, decimal_text, enum_name, unbase64};

/// Converts any serde value to a [`Value`] (through its Hessian encoding).
pub fn to_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value> {
    decode_value(&to_bytes(value)?)
}

/// Converts a [`Value`] to any serde type (through its Hessian encoding).
pub fn from_value<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T> {
    from_slice(&encode_value(value))
}
