//! serde `Serializer` writing Hessian 2.0.
//!
//! Rust ↔ Java: structs become objects of the class named by the struct's serde name (use
//! `#[serde(rename = "com.example.User")]`, or [`Encoder::rename_class`]), unit enum
//! variants become Java enum constants (an object of the enum's class with one field
//! `name`), sequences become untyped lists (Java `ArrayList`), maps untyped maps (Java
//! `HashMap`), `Option::None` and `()` become null, byte buffers written with
//! `serialize_bytes` become `byte[]`, [`Date`](crate::Date) a date. Other enum variants are
//! written as a one-entry map `{variant: value}`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use serde::ser::{self, Serialize};

use crate::encode::{Encoder, Fields, StructKey};
use crate::error::{Error, Result};

/// The newtype-struct name by which [`crate::Date`] tells the serializer it is a date.
pub(crate) const DATE_TOKEN: &str = "$rdubbo_hessian::Date";

thread_local! {
    /// Field lists of the structs serialized so far, by (name, field count): with them, a
    /// class definition can be written before the first instance's values.
    static SCHEMAS: RefCell<HashMap<StructKey, Fields>> =
        RefCell::new(HashMap::new());
}

impl Encoder {
    /// Writes any serde value to the stream.
    pub fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self)
    }

    /// Writes instances of the struct or enum `rust_name` (its serde name) as the Java
    /// class `java_name`.
    pub fn rename_class(&mut self, rust_name: &'static str, java_name: impl Into<String>) {
        self.renames.insert(rust_name, java_name.into());
    }

    fn class_name(&self, name: &'static str) -> String {
        self.renames
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }
}

/// Encodes `value` as a stream of its own.
///
/// The first time a struct type is written in a thread its field names are learnt while
/// writing; the value is then written again so that class definitions come out in the
/// order Java writes them.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut e = Encoder::new();
    to_encoder(&mut e, value)?;
    Ok(e.into_bytes())
}

/// Writes `value` into `e`'s stream (see [`to_bytes`]).
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

/// Writes a struct: fields checked against the class definition already written.
pub struct StructSerializer<'a> {
    enc: &'a mut Encoder,
    mode: StructMode,
}

enum StructMode {
    /// The class definition is written; values follow in its field order.
    Known {
        fields: Arc<[&'static str]>,
        next: usize,
    },
    /// First sight of this struct: values go to a side buffer while field names are learnt.
    Learning {
        name: &'static str,
        len: usize,
        outer: Vec<u8>,
        fields: Vec<&'static str>,
    },
}

impl<'a> StructSerializer<'a> {
    fn begin(enc: &'a mut Encoder, name: &'static str, len: usize) -> StructSerializer<'a> {
        let key = (name, len);
        if let Some((index, fields)) = enc.struct_classes.get(&key) {
            let (index, fields) = (*index, fields.clone());
            enc.write_instance(index);
            return StructSerializer {
                enc,
                mode: StructMode::Known { fields, next: 0 },
            };
        }
        if let Some(fields) = SCHEMAS.with(|s| s.borrow().get(&key).cloned()) {
            let class = enc.class_name(name);
            let index = enc.define_class(&class, fields.iter().copied());
            enc.remember_struct(key, index, fields.clone());
            enc.write_instance(index);
            return StructSerializer {
                enc,
                mode: StructMode::Known { fields, next: 0 },
            };
        }
        enc.relearn = true;
        let outer = std::mem::take(&mut enc.buf);
        StructSerializer {
            enc,
            mode: StructMode::Learning {
                name,
                len,
                outer,
                fields: Vec::with_capacity(len),
            },
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        match &mut self.mode {
            StructMode::Known { fields, next } => {
                while *next < fields.len() && fields[*next] != key {
                    self.enc.write_null();
                    *next += 1;
                }
                if *next == fields.len() {
                    return Err(Error::Message(format!(
                        "field `{key}` is not in the class definition written for this struct"
                    )));
                }
                *next += 1;
                value.serialize(&mut *self.enc)
            }
            StructMode::Learning { fields, .. } => {
                fields.push(key);
                value.serialize(&mut *self.enc)
            }
        }
    }

    fn finish(self) -> Result<()> {
        match self.mode {
            StructMode::Known { fields, next } => {
                for _ in next..fields.len() {
                    self.enc.write_null();
                }
            }
            StructMode::Learning {
                name,
                len,
                outer,
                fields,
            } => {
                let values = std::mem::replace(&mut self.enc.buf, outer);
                let fields: Arc<[&'static str]> = fields.into();
                SCHEMAS.with(|s| s.borrow_mut().insert((name, len), fields.clone()));
                let class = self.enc.class_name(name);
                let index = self.enc.define_class(&class, fields.iter().copied());
                self.enc.remember_struct((name, len), index, fields);
                self.enc.write_instance(index);
                self.enc.buf.extend_from_slice(&values);
            }
        }
        Ok(())
    }
}

impl ser::SerializeStruct for StructSerializer<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    fn skip_field(&mut self, _key: &'static str) -> Result<()> {
        Ok(())
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

/// Writes a struct variant as `{variant: {field: value …}}`.
pub struct VariantSerializer<'a> {
    enc: &'a mut Encoder,
}

impl ser::SerializeStructVariant for VariantSerializer<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.enc.write_str(key);
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<()> {
        self.enc.write_end();
        self.enc.write_end();
        Ok(())
    }
}

impl ser::SerializeTupleVariant for VariantSerializer<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<()> {
        self.enc.write_end();
        self.enc.write_end();
        Ok(())
    }
}

/// Writes a sequence, tuple or map.
pub struct Compound<'a> {
    enc: &'a mut Encoder,
    /// Whether an end marker `Z` closes it.
    ended: bool,
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<()> {
        if self.ended {
            self.enc.write_end();
        }
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<()> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<()> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut *self.enc)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<()> {
        self.enc.write_end();
        Ok(())
    }
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

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.write_bool(v);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.write_int(v.into());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.write_int(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.write_int(v);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        if std::mem::take(&mut self.date_next) {
            self.write_date(v);
        } else {
            self.write_long(v);
        }
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<()> {
        let v = i64::try_from(v).map_err(|_| Error::OutOfRange {
            value: v.to_string(),
            target: "a Hessian long",
        })?;
        self.serialize_i64(v)
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.write_int(v.into());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.write_int(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        match i32::try_from(v) {
            Ok(i) => self.write_int(i),
            Err(_) => self.write_long(v.into()),
        }
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        let v = i64::try_from(v).map_err(|_| Error::OutOfRange {
            value: v.to_string(),
            target: "a Hessian long",
        })?;
        self.serialize_i64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<()> {
        let v = i64::try_from(v).map_err(|_| Error::OutOfRange {
            value: v.to_string(),
            target: "a Hessian long",
        })?;
        self.serialize_i64(v)
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.write_double(v.into());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.write_double(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        let mut tmp = [0u8; 4];
        self.write_str(v.encode_utf8(&mut tmp));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.write_str(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.write_bytes(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<()> {
        self.write_null();
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        self.write_null();
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.write_null();
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        // A Java enum constant: an object of the enum's class with its `name`; the same
        // constant again is a reference to the first (Java writes singletons so).
        if let Some(&r) = self.enum_refs.get(&(name, variant)) {
            self.write_ref(r);
            return Ok(());
        }
        self.enum_refs.insert((name, variant), self.refs);
        let key = (name, usize::MAX);
        let index = match self.struct_classes.get(&key) {
            Some((i, _)) => *i,
            None => {
                let class = self.class_name(name);
                let i = self.define_class(&class, ["name"].into_iter());
                self.remember_struct(key, i, Arc::from(vec!["name"]));
                i
            }
        };
        self.write_instance(index);
        self.write_str(variant);
        Ok(())
    }
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
    fn is_human_readable(&self) -> bool {
        false
    }
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
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
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
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>> {
        self.write_map_begin(None);
        Ok(Compound {
            enc: self,
            ended: true,
        })
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<StructSerializer<'a>> {
        Ok(StructSerializer::begin(self, name, len))
    }
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
