//! serde `Serializer` writing Hessian 2.0.
//!
//! Rust ↔ Java: structs become objects of the class named by the struct's serde name (use
//! `#[serde(rename = "com.example.User")]`, or [`Encoder::rename_class`]), unit enum
//! variants become Java enum constants (an object of the enum's class with one field
//! `name`), sequences become untyped lists (Java `ArrayList`), maps untyped maps (Java
//! `HashMap`), `Option::None` and `()` become null, byte buffers written with
//! `serialize_bytes` become `byte[]`, [`Date`](crate::Date) a date. Other enum variants are
//! written as a one-entry map `{variant: value}`.

use std::collections::HashMap;

use serde::ser::{self, Serialize};

use crate::encode::Encoder;
use crate::error::{Error, Result};

mod structs;

pub use structs::StructSerializer;
use structs::{enum_schema, Schema};

/// The newtype-struct name by which [`crate::Date`] tells the serializer it is a date.
pub(crate) const DATE_TOKEN: &str = "$rdubbo_hessian::Date";

impl Encoder {
    /// Writes any serde value to the stream.
    pub fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self)
    }

    /// Writes instances of the struct or enum `rust_name` (its serde name) as the Java
    /// class `java_name`.
    pub fn rename_class(&mut self, rust_name: &'static str, java_name: impl Into<String>) {
        self.renames
            .get_or_insert_with(HashMap::new)
            .insert(rust_name, java_name.into());
    }

    /// The Java class name given to `name` by [`Encoder::rename_class`], if any.
    #[inline]
    fn renamed(&self, name: &'static str) -> Option<String> {
        self.renames.as_ref()?.get(name).cloned()
    }

    /// Writes the class definition of a struct whose schema is known; returns its index.
    #[inline]
    fn define_struct(&mut self, name: &'static str, len: usize, schema: &'static Schema) -> usize {
        let index = match self.renamed(name) {
            Some(class) => self.define_class(&class, schema.fields.iter().copied()),
            None => self.define_class_encoded(schema.definition),
        };
        self.remember_struct(name, len, index, schema.fields);
        index
    }
}

/// Encodes `value` as a stream of its own.
///
/// The first time a struct type is written (in this process) its field names are learnt
/// while writing; the value is then written again so that class definitions come out in
/// the order Java writes them.
#[inline]
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut e = Encoder::with_buffer(Vec::with_capacity(256));
    to_encoder(&mut e, value)?;
    Ok(e.into_bytes())
}

/// Writes `value` into `e`'s stream (see [`to_bytes`]).
#[inline]
pub fn to_encoder<T: Serialize + ?Sized>(e: &mut Encoder, value: &T) -> Result<()> {
    let start = e.buf.len();
    let snapshot = e.snapshot();
    e.relearn = false;
    e.write(value)?;
    if e.relearn {
        e.restore(snapshot);
        e.buf.truncate(start);
        e.relearn = false;
        e.write(value)?;
    }
    Ok(())
}

/// Writes a struct variant as `{variant: {field: value …}}`, a tuple variant as
/// `{variant: [value …]}`.
pub struct VariantSerializer<'a> {
    enc: &'a mut Encoder,
}

impl VariantSerializer<'_> {
    /// Ends the inner list or map, then the outer map.
    #[inline]
    fn close(self) {
        self.enc.write_end();
        self.enc.write_end();
    }
}

/// Writes a sequence, tuple or map.
pub struct Compound<'a> {
    enc: &'a mut Encoder,
    /// Whether an end marker `Z` closes it.
    ended: bool,
}

impl Compound<'_> {
    /// Writes the end marker when the compound has one.
    #[inline]
    fn close(self) {
        if self.ended {
            self.enc.write_end();
        }
    }
}

/// serde's compound traits whose elements are written one after the other, and closed by
/// the serializer's `close`.
macro_rules! elements_in_turn {
    ($($ty:ident: $trait:ident::$method:ident;)*) => {$(
        impl ser::$trait for $ty<'_> {
            type Ok = ();
            type Error = Error;
            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                value.serialize(&mut *self.enc)
            }
            #[inline]
            fn end(self) -> Result<()> {
                self.close();
                Ok(())
            }
        }
    )*};
}

elements_in_turn! {
    Compound: SerializeSeq::serialize_element;
    Compound: SerializeTuple::serialize_element;
    Compound: SerializeTupleStruct::serialize_field;
    VariantSerializer: SerializeTupleVariant::serialize_field;
}

impl ser::SerializeStructVariant for VariantSerializer<'_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.enc.write_str(key);
        value.serialize(&mut *self.enc)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut *self.enc)
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.enc)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close();
        Ok(())
    }
}

/// `v` as a Hessian long (64 bits, signed), or the error naming it.
#[inline]
fn long<T: TryInto<i64> + ToString + Copy>(v: T) -> Result<i64> {
    v.try_into().map_err(|_| Error::OutOfRange {
        value: v.to_string(),
        target: "a Hessian long",
    })
}

/// Serializer methods of integers that always fit a Hessian int.
macro_rules! small_ints {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method(self, v: $ty) -> Result<()> {
            self.write_int(v.into());
            Ok(())
        }
    )*};
}

/// Serializer methods of integers written as a Hessian long when they fit one, refused
/// (`Error::OutOfRange`) when not.
macro_rules! wide_ints {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method(self, v: $ty) -> Result<()> {
            self.serialize_i64(long(v)?)
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut Encoder {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = VariantSerializer<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = StructSerializer<'a>;
    type SerializeStructVariant = VariantSerializer<'a>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.write_bool(v);
        Ok(())
    }
    small_ints! {
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_u8(u8);
        serialize_u16(u16);
    }
    wide_ints! {
        serialize_i128(i128);
        serialize_u64(u64);
        serialize_u128(u128);
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.write_int(v);
        Ok(())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<()> {
        if std::mem::take(&mut self.date_next) {
            self.write_date(v);
        } else {
            self.write_long(v);
        }
        Ok(())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<()> {
        match i32::try_from(v) {
            Ok(i) => self.write_int(i),
            Err(_) => self.write_long(v.into()),
        }
        Ok(())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.write_double(v.into());
        Ok(())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.write_double(v);
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<()> {
        let mut tmp = [0u8; 4];
        self.write_str(v.encode_utf8(&mut tmp));
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.write_str(v);
        Ok(())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.write_bytes(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.write_null();
        Ok(())
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<()> {
        self.write_null();
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.write_null();
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        // A Java enum constant: an object of the enum's class with its `name`; the same
        // constant again is a reference to the first (Java writes singletons so).
        if let Some(r) = self.enum_ref(name, variant) {
            self.write_ref(r);
            return Ok(());
        }
        self.remember_enum(name, variant, self.refs);
        let index = match self.struct_class(name, usize::MAX) {
            Some(class) => class.index,
            None => self.define_struct(name, usize::MAX, enum_schema(name)),
        };
        self.write_instance(index);
        self.write_str(variant);
        Ok(())
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        if name == DATE_TOKEN {
            self.date_next = true;
            let r = value.serialize(&mut *self);
            self.date_next = false;
            return r;
        }
        if name == crate::value_serde::VALUE_TOKEN {
            // A `Value` hands itself over whole, to be written exactly as it is.
            if let Some(v) = crate::value_serde::TO_ENCODE.with(|p| p.borrow_mut().take()) {
                self.write_value(&v);
                return Ok(());
            }
        }
        value.serialize(self)
    }
    #[inline]
    fn is_human_readable(&self) -> bool {
        false
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.write_map_begin(None);
        self.write_str(variant);
        value.serialize(&mut *self)?;
        self.write_end();
        Ok(())
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>> {
        match len {
            Some(n) => {
                self.write_list_begin(n, None);
                Ok(Compound {
                    enc: self,
                    ended: false,
                })
            }
            None => {
                self.write_list_begin_variable(None);
                Ok(Compound {
                    enc: self,
                    ended: true,
                })
            }
        }
    }
    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<VariantSerializer<'a>> {
        self.write_map_begin(None);
        self.write_str(variant);
        self.write_list_begin_variable(None);
        Ok(VariantSerializer { enc: self })
    }
    #[inline]
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>> {
        self.write_map_begin(None);
        Ok(Compound {
            enc: self,
            ended: true,
        })
    }
    #[inline]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<StructSerializer<'a>> {
        Ok(StructSerializer::begin(self, name, len))
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<VariantSerializer<'a>> {
        self.write_map_begin(None);
        self.write_str(variant);
        self.write_map_begin(None);
        Ok(VariantSerializer { enc: self })
    }
}
