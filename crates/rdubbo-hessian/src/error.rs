//! Errors of encoding and decoding.

use std::fmt::Display;

/// What went wrong while encoding or decoding Hessian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside a value.
    #[error("unexpected end of input at byte {0}")]
    Eof(usize),
    /// A byte that cannot start what is expected there.
    #[error("unexpected byte 0x{tag:02x} at byte {pos}, expected {expected}")]
    UnexpectedTag {
        /// The byte found.
        tag: u8,
        /// Where it was found.
        pos: usize,
        /// What was expected instead.
        expected: &'static str,
    },
    /// A string that is not valid (modified) UTF-8.
    #[error("invalid UTF-8 in string at byte {0}")]
    Utf8(usize),
    /// An object instance names a class definition that was not sent.
    #[error("unknown class definition #{index} at byte {pos}")]
    UnknownClass {
        /// The class index.
        index: usize,
        /// Where the instance starts.
        pos: usize,
    },
    /// A type reference that was not defined.
    #[error("unknown type reference #{index} at byte {pos}")]
    UnknownType {
        /// The type index.
        index: usize,
        /// Where the reference is.
        pos: usize,
    },
    /// A back-reference to a value that was not sent.
    #[error("unknown reference #{index} at byte {pos}")]
    UnknownRef {
        /// The reference index.
        index: usize,
        /// Where the reference is.
        pos: usize,
    },
    /// A back-reference to a value that contains it: fine for [`Value`](crate::Value),
    /// impossible for a typed value.
    #[error("cyclic reference #{index} at byte {pos} cannot be decoded into a typed value")]
    Cycle {
        /// The reference index.
        index: usize,
        /// Where the reference is.
        pos: usize,
    },
    /// Values nested deeper than the decoder's limit.
    #[error("values nested deeper than {0} levels")]
    TooDeep(usize),
    /// References expand to more values than the decoder's budget allows.
    #[error("references expand to more than {0} values")]
    TooLarge(usize),
    /// A number that does not fit the target type.
    #[error("number {value} out of range for {target}")]
    OutOfRange {
        /// The number, as text.
        value: String,
        /// The Rust type it was decoded into.
        target: &'static str,
    },
    /// Anything else, e.g. from a serde `Serialize`/`Deserialize` implementation.
    #[error("{0}")]
    Message(String),
}

impl serde::ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::Message(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::Message(msg.to_string())
    }
}

/// The result of encoding or decoding.
pub type Result<T> = std::result::Result<T, Error>;
