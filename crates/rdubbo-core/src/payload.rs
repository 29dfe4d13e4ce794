//! What a call carries: its arguments ([`Args`]) and its result ([`Reply`]).
//!
//! Each is one of three forms, and a protocol or a service takes whichever it is handed:
//! - **typed**: the Rust values a generated stub or dispatcher holds, written straight to
//!   the wire format (Hessian2, JSON) with no dynamic value in between;
//! - **dynamic**: [`Value`]s, the lossless Java value model (generic calls, the CLI,
//!   filters that look inside a call);
//! - **encoded**: still in the wire format it arrived in, decoded only when, and into
//!   what, the receiver asks ([`ArgsDecoder::read`], [`Reply::decode`]).
//!
//! ```
//! use rdubbo_core::{Args, Reply, Value};
//!
//! // A stub's typed arguments, seen as dynamic values by a filter:
//! let args = Args::typed((5_i64, String::from("ann")));
//! assert_eq!(args.to_values().unwrap(), vec![Value::Long(5), Value::from("ann")]);
//!
//! // A dispatcher decodes each argument into its Rust type:
//! let mut d = args.decoder();
//! let id: i64 = d.read().unwrap();
//! let name: String = d.read().unwrap();
//! assert_eq!((id, name.as_str()), (5, "ann"));
//!
//! // A typed result, decoded by the caller:
//! let reply = Reply::typed(vec![1_i32, 2]);
//! assert_eq!(reply.decode::<Vec<i32>>().unwrap(), vec![1, 2]);
//! ```

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use rdubbo_hessian::{Decoder, Encoder};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::json;
use crate::stream::MessageStream;
use crate::{RpcError, RpcResult, Value};

const MESSAGE_ONLY: &str = "a protobuf message (an IDL call) has no Java value: it cannot be sent over a Hessian or JSON protocol";
const STREAM_ONLY: &str = "a message stream (a streaming call) has no Java value: it cannot be sent over a Hessian or JSON protocol";

/// Typed arguments: the tuple of Rust values a stub was called with.
///
/// Implemented for tuples of up to 12 serde values; `()` for no arguments.
pub trait TypedArgs: Send + Sync + 'static {
    /// How many arguments.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes every argument, in order, into a Hessian2 stream.
    fn write_hessian(&self, e: &mut Encoder) -> rdubbo_hessian::Result<()>;
    /// Writes the arguments as one JSON array.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    /// The arguments as dynamic values.
    fn to_values(&self) -> rdubbo_hessian::Result<Vec<Value>>;
}

macro_rules! typed_args {
    ($($n:literal: $($t:ident $i:tt),*;)*) => {$(
        impl<$($t: Serialize + Send + Sync + 'static),*> TypedArgs for ($($t,)*) {
            fn len(&self) -> usize {
                $n
            }
            #[allow(unused_variables)]
            fn write_hessian(&self, e: &mut Encoder) -> rdubbo_hessian::Result<()> {
                $(rdubbo_hessian::to_encoder(e, &self.$i)?;)*
                Ok(())
            }
            #[allow(unused_mut)]
            fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
                out.push(b'[');
                let mut first = true;
                $(
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut *out, &self.$i)?;
                )*
                let _ = first;
                out.push(b']');
                Ok(())
            }
            #[allow(clippy::reversed_empty_ranges)]
            fn to_values(&self) -> rdubbo_hessian::Result<Vec<Value>> {
                // One stream, so values shared between arguments stay shared.
                let mut e = Encoder::new();
                TypedArgs::write_hessian(self, &mut e)?;
                let bytes = e.into_bytes();
                let mut d = Decoder::new(&bytes);
                let mut out = Vec::with_capacity($n);
                for _ in 0..$n {
                    out.push(d.read_value()?);
                }
                Ok(out)
            }
        }
    )*};
}

typed_args! {
    0: ;
    1: A 0;
    2: A 0, B 1;
    3: A 0, B 1, C 2;
    4: A 0, B 1, C 2, D 3;
    5: A 0, B 1, C 2, D 3, E 4;
    6: A 0, B 1, C 2, D 3, E 4, F 5;
    7: A 0, B 1, C 2, D 3, E 4, F 5, G 6;
    8: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7;
    9: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8;
    10: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9;
    11: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10;
    12: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11;
}

/// Arguments still in a Hessian2 stream: `count` values in `body[start..end]`.
#[derive(Clone)]
pub struct HessianArgs {
    /// The bytes holding them (a request body).
    pub body: Bytes,
    /// Where the first argument begins.
    pub start: usize,
    /// Where the last one ends.
    pub end: usize,
    /// How many there are.
    pub count: usize,
}

/// The positional arguments of a call.
#[derive(Clone)]
pub enum Args {
    /// Dynamic values.
    Values(Vec<Value>),
    /// A stub's Rust values, encoded straight to the wire.
    Typed(Arc<dyn TypedArgs>),
    /// Received in Hessian2 (the dubbo protocol), not decoded yet.
    Hessian(HessianArgs),
    /// Received as JSON (JSON-RPC `params`), not mapped yet.
    Json(Vec<serde_json::Value>),
    /// One encoded protobuf message, passed through untouched (a unary or
    /// server-streaming call of an IDL service over Triple).
    Message(Bytes),
    /// A stream of encoded messages (a client-streaming or bidirectional call).
    Stream(MessageStream),
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Args::Values(v) => f.debug_tuple("Values").field(v).finish(),
            Args::Typed(t) => write!(f, "Typed({} values)", t.len()),
            Args::Hessian(h) => write!(f, "Hessian({} values, {} bytes)", h.count, h.end - h.start),
            Args::Json(v) => f.debug_tuple("Json").field(v).finish(),
            Args::Message(m) => write!(f, "Message({} bytes)", m.len()),
            Args::Stream(s) => write!(f, "{s:?}"),
        }
    }
}

impl Default for Args {
    fn default() -> Args {
        Args::Values(Vec::new())
    }
}

impl From<Vec<Value>> for Args {
    fn from(v: Vec<Value>) -> Args {
        Args::Values(v)
    }
}

impl PartialEq for Args {
    /// Equal when they hold the same values (compared as dynamic values).
    fn eq(&self, other: &Args) -> bool {
        matches!((self.to_values(), other.to_values()), (Ok(a), Ok(b)) if a == b)
    }
}

impl Args {
    /// Typed arguments from a tuple of serde values.
    pub fn typed<T: TypedArgs>(args: T) -> Args {
        Args::Typed(Arc::new(args))
    }

    /// How many arguments.
    pub fn len(&self) -> usize {
        match self {
            Args::Values(v) => v.len(),
            Args::Typed(t) => t.len(),
            Args::Hessian(h) => h.count,
            Args::Json(v) => v.len(),
            Args::Message(_) | Args::Stream(_) => 1,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The arguments as dynamic values (JSON mapped as `rdubbo_core::json` documents).
    pub fn to_values(&self) -> Result<Vec<Value>, String> {
        match self {
            Args::Values(v) => Ok(v.clone()),
            Args::Typed(t) => t.to_values().map_err(|e| e.to_string()),
            Args::Hessian(h) => {
                let mut d = Decoder::new(&h.body[h.start..h.end]);
                (0..h.count)
                    .map(|i| d.read_value().map_err(|e| format!("argument {i}: {e}")))
                    .collect()
            }
            Args::Json(v) => Ok(v.iter().map(json::to_value).collect()),
            Args::Message(_) => Err(MESSAGE_ONLY.into()),
            Args::Stream(_) => Err(STREAM_ONLY.into()),
        }
    }

    /// The one message of an IDL call.
    pub fn into_message(self) -> RpcResult<Bytes> {
        match self {
            Args::Message(m) => Ok(m),
            other => Err(RpcError::Invalid(format!(
                "expected one protobuf message, got {other:?}"
            ))),
        }
    }

    /// The messages of a streaming call (a single message as a stream of one).
    pub fn into_stream(self) -> RpcResult<MessageStream> {
        match self {
            Args::Stream(s) => Ok(s),
            Args::Message(m) => Ok(MessageStream::once(m)),
            other => Err(RpcError::Invalid(format!(
                "expected a message stream, got {other:?}"
            ))),
        }
    }

    /// Argument `i` as a dynamic value (`None` past the end or when it cannot be read).
    pub fn value(&self, i: usize) -> Option<Value> {
        match self {
            Args::Values(v) => v.get(i).cloned(),
            Args::Json(v) => v.get(i).map(json::to_value),
            other => other.to_values().ok()?.into_iter().nth(i),
        }
    }

    /// The first argument as a dynamic value.
    pub fn first(&self) -> Option<Value> {
        self.value(0)
    }

    /// The arguments as dynamic values, taking them.
    pub fn into_values(self) -> Result<Vec<Value>, String> {
        match self {
            Args::Values(v) => Ok(v),
            other => other.to_values(),
        }
    }

    /// Writes every argument, in order, into a Hessian2 stream. Dynamic values are
    /// written as they are; use [`Args::to_values`] first to adjust them.
    pub fn write_hessian(&self, e: &mut Encoder) -> Result<(), String> {
        match self {
            Args::Values(v) => {
                for x in v {
                    e.write_value(x);
                }
                Ok(())
            }
            Args::Typed(t) => t.write_hessian(e).map_err(|e| e.to_string()),
            Args::Hessian(h) => {
                e.write_raw(&h.body[h.start..h.end]);
                Ok(())
            }
            Args::Json(v) => {
                for x in v {
                    e.write_value(&json::to_value(x));
                }
                Ok(())
            }
            Args::Message(_) => Err(MESSAGE_ONLY.into()),
            Args::Stream(_) => Err(STREAM_ONLY.into()),
        }
    }

    /// Writes the arguments as one JSON array.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Args::Typed(t) => t.write_json(out).map_err(|e| e.to_string()),
            Args::Json(v) => serde_json::to_writer(out, v).map_err(|e| e.to_string()),
            other => {
                let values = other.to_values()?;
                let json: Vec<serde_json::Value> = values.iter().map(json::from_value).collect();
                serde_json::to_writer(out, &json).map_err(|e| e.to_string())
            }
        }
    }

    /// A reader of the arguments one by one, into Rust types.
    pub fn decoder(&self) -> ArgsDecoder<'_> {
        let state = match self {
            Args::Hessian(h) => State::Hessian(Decoder::new(&h.body[h.start..h.end])),
            Args::Typed(t) => match t.to_values() {
                Ok(v) => State::Owned(v),
                Err(e) => State::Failed(e.to_string()),
            },
            Args::Message(_) => State::Failed(MESSAGE_ONLY.into()),
            Args::Stream(_) => State::Failed(STREAM_ONLY.into()),
            _ => State::Borrowed,
        };
        ArgsDecoder {
            args: self,
            index: 0,
            state,
        }
    }
}

// Not boxed: an argument reader lives for one dispatch, and boxing would cost every call
// over the wire an allocation.
#[allow(clippy::large_enum_variant)]
enum State<'a> {
    Borrowed,
    Owned(Vec<Value>),
    Hessian(Decoder<'a>),
    Failed(String),
}

/// Reads arguments in order into Rust types (see [`Args::decoder`]).
pub struct ArgsDecoder<'a> {
    args: &'a Args,
    index: usize,
    state: State<'a>,
}

impl ArgsDecoder<'_> {
    /// Decodes the next argument as a `T`; a missing argument decodes as null.
    pub fn read<T: DeserializeOwned>(&mut self) -> Result<T, String> {
        let i = self.index;
        self.index += 1;
        match (&mut self.state, self.args) {
            (State::Hessian(d), Args::Hessian(h)) => {
                if i >= h.count {
                    return rdubbo_hessian::from_value(&Value::Null).map_err(|e| e.to_string());
                }
                d.read::<T>().map_err(|e| e.to_string())
            }
            (State::Owned(v), _) => from_value(v.get(i).unwrap_or(&Value::Null)),
            (State::Failed(e), _) => Err(e.clone()),
            (_, Args::Values(v)) => from_value(v.get(i).unwrap_or(&Value::Null)),
            (_, Args::Json(v)) => match v.get(i) {
                Some(j) => T::deserialize(j).map_err(|e| e.to_string()),
                None => T::deserialize(&serde_json::Value::Null).map_err(|e| e.to_string()),
            },
            _ => Err("inconsistent argument reader".into()),
        }
    }
}

fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    rdubbo_hessian::from_value(v).map_err(|e| e.to_string())
}

/// A typed result: a Rust value a service returned, encoded straight to the wire.
pub trait TypedValue: Send + Sync + 'static {
    /// Writes it into a Hessian2 stream.
    fn write_hessian(&self, e: &mut Encoder) -> rdubbo_hessian::Result<()>;
    /// Writes it as JSON.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    /// It as a dynamic value.
    fn to_value(&self) -> rdubbo_hessian::Result<Value>;
}

impl<T: Serialize + Send + Sync + 'static> TypedValue for T {
    fn write_hessian(&self, e: &mut Encoder) -> rdubbo_hessian::Result<()> {
        rdubbo_hessian::to_encoder(e, self)
    }
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
    fn to_value(&self) -> rdubbo_hessian::Result<Value> {
        rdubbo_hessian::to_value(self)
    }
}

/// The result of a successful call.
pub enum Reply {
    /// A dynamic value.
    Value(Value),
    /// A service's Rust value, encoded straight to the wire.
    Typed(Box<dyn TypedValue>),
    /// Received in Hessian2: the value begins at `start` of `body`.
    Hessian {
        /// The bytes holding it (a response body).
        body: Bytes,
        /// Where the value begins.
        start: usize,
    },
    /// Received as JSON.
    Json(serde_json::Value),
    /// One encoded protobuf message (the answer of a unary or client-streaming IDL call).
    Message(Bytes),
    /// A stream of encoded messages (the answer of a server-streaming or bidirectional
    /// call; a stream call's `Err` items end it with that error).
    Stream(MessageStream),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Value(v) => f.debug_tuple("Value").field(v).finish(),
            Reply::Typed(_) => f.write_str("Typed(..)"),
            Reply::Hessian { body, start } => write!(f, "Hessian({} bytes)", body.len() - start),
            Reply::Json(v) => f.debug_tuple("Json").field(v).finish(),
            Reply::Message(m) => write!(f, "Message({} bytes)", m.len()),
            Reply::Stream(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<Value> for Reply {
    fn from(v: Value) -> Reply {
        Reply::Value(v)
    }
}

impl PartialEq<Value> for Reply {
    fn eq(&self, other: &Value) -> bool {
        self.to_value().is_ok_and(|v| v == *other)
    }
}

impl PartialEq<str> for Reply {
    /// Equal when the result is the string `other`.
    fn eq(&self, other: &str) -> bool {
        self.to_value().is_ok_and(|v| v.as_str() == Some(other))
    }
}

impl PartialEq<&str> for Reply {
    /// Equal when the result is the string `other`.
    fn eq(&self, other: &&str) -> bool {
        self.to_value().is_ok_and(|v| v.as_str() == Some(*other))
    }
}

impl PartialEq<serde_json::Value> for Reply {
    /// Equal when the result's JSON form is `other`.
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_json().is_ok_and(|v| v == *other)
    }
}

impl Reply {
    /// A typed result (a [`Value`] stays a dynamic one).
    pub fn typed<T: Serialize + Send + Sync + 'static>(value: T) -> Reply {
        let any: Box<dyn std::any::Any> = Box::new(value);
        match any.downcast::<Value>() {
            Ok(v) => Reply::Value(*v),
            Err(any) => match any.downcast::<T>() {
                Ok(t) => Reply::Typed(t),
                Err(_) => Reply::Value(Value::Null),
            },
        }
    }

    /// Decodes the result into a Rust type.
    pub fn decode<T: DeserializeOwned>(self) -> Result<T, String> {
        match self {
            Reply::Hessian { body, start } => {
                let mut d = Decoder::new(body.get(start..).unwrap_or_default());
                d.read::<T>().map_err(|e| e.to_string())
            }
            Reply::Json(j) => T::deserialize(j).map_err(|e| e.to_string()),
            Reply::Value(v) => from_value(&v),
            Reply::Typed(t) => from_value(&t.to_value().map_err(|e| e.to_string())?),
            Reply::Message(_) => Err(MESSAGE_ONLY.into()),
            Reply::Stream(_) => Err(STREAM_ONLY.into()),
        }
    }

    /// The one message of an IDL answer (the first of a stream, read here).
    pub async fn into_message(self) -> RpcResult<Bytes> {
        match self {
            Reply::Message(m) => Ok(m),
            Reply::Stream(s) => match s.take()?.next().await {
                Some(m) => m,
                None => Err(RpcError::Codec(
                    "the answer stream ended without a message".into(),
                )),
            },
            other => Err(RpcError::Codec(format!(
                "expected one protobuf message, got {other:?}"
            ))),
        }
    }

    /// The messages of a streaming answer (a single message as a stream of one).
    pub fn into_stream(self) -> RpcResult<MessageStream> {
        match self {
            Reply::Stream(s) => Ok(s),
            Reply::Message(m) => Ok(MessageStream::once(m)),
            other => Err(RpcError::Codec(format!(
                "expected a message stream, got {other:?}"
            ))),
        }
    }

    /// The result as a dynamic value (JSON mapped as `rdubbo_core::json` documents).
    pub fn to_value(&self) -> Result<Value, String> {
        match self {
            Reply::Value(v) => Ok(v.clone()),
            Reply::Typed(t) => t.to_value().map_err(|e| e.to_string()),
            Reply::Hessian { body, start } => {
                let mut d = Decoder::new(body.get(*start..).unwrap_or_default());
                d.read_value().map_err(|e| e.to_string())
            }
            Reply::Json(j) => Ok(json::to_value(j)),
            Reply::Message(_) => Err(MESSAGE_ONLY.into()),
            Reply::Stream(_) => Err(STREAM_ONLY.into()),
        }
    }

    /// The result as a dynamic value, taking it.
    pub fn into_value(self) -> Result<Value, String> {
        match self {
            Reply::Value(v) => Ok(v),
            other => other.to_value(),
        }
    }

    /// The result as JSON (dynamic values mapped as `rdubbo_core::json` documents).
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        match self {
            Reply::Json(j) => Ok(j.clone()),
            Reply::Typed(t) => {
                let mut out = Vec::new();
                t.write_json(&mut out).map_err(|e| e.to_string())?;
                serde_json::from_slice(&out).map_err(|e| e.to_string())
            }
            other => Ok(json::from_value(&other.to_value()?)),
        }
    }

    /// Writes the result into a Hessian2 stream.
    pub fn write_hessian(&self, e: &mut Encoder) -> Result<(), String> {
        match self {
            Reply::Value(v) => {
                e.write_value(v);
                Ok(())
            }
            Reply::Typed(t) => t.write_hessian(e).map_err(|e| e.to_string()),
            Reply::Json(j) => {
                e.write_value(&json::to_value(j));
                Ok(())
            }
            Reply::Hessian { .. } => {
                e.write_value(&self.to_value()?);
                Ok(())
            }
            Reply::Message(_) => Err(MESSAGE_ONLY.into()),
            Reply::Stream(_) => Err(STREAM_ONLY.into()),
        }
    }

    /// Writes the result as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Reply::Typed(t) => t.write_json(out).map_err(|e| e.to_string()),
            Reply::Json(j) => serde_json::to_writer(out, j).map_err(|e| e.to_string()),
            other => serde_json::to_writer(out, &json::from_value(&other.to_value()?))
                .map_err(|e| e.to_string()),
        }
    }
}
