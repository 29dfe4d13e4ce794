//! serde `Deserializer` reading Hessian 2.0 directly from bytes.
//!
//! Objects deserialize as maps of their fields (into structs, maps or anything that takes
//! a map), Java enum constants into unit variants (by their `name` field, or from a plain
//! string), dates into [`Date`](crate::Date) or an `i64` of milliseconds, binary into byte
//! buffers. A back-reference is read by reading the referenced value again; a reference
//! that forms a cycle is an error here ([`Value`](crate::Value) can hold cycles).

use std::borrow::Cow;

use serde::de::value::{BorrowedStrDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::decode::{Decoder, ListKind};
use crate::error::{Error, Result};
use crate::ser::DATE_TOKEN;

/// Decodes one value of type `T` from `input`, which must hold exactly that value.
pub fn from_slice<'de, T: de::Deserialize<'de>>(input: &'de [u8]) -> Result<T> {
    let mut d = Decoder::new(input);
    let v = T::deserialize(&mut d)?;
    if !d.is_at_end() {
        return Err(Error::Message(format!(
            "{} trailing bytes after the value",
            input.len() - d.position()
        )));
    }
    Ok(v)
}

impl<'de> Decoder<'de> {
    /// Reads the next value of the stream as a `T`.
    pub fn read<T: de::Deserialize<'de>>(&mut self) -> Result<T> {
        T::deserialize(self)
    }

    /// Skips class definitions; if the next value is a back-reference, moves the read
    /// position to the referenced value and returns where to come back to.
    #[inline]
    fn follow(&mut self) -> Result<Option<(usize, usize)>> {
        while self.peek()? == b'C' {
            self.pos += 1;
            self.class_def()?;
        }
        if self.peek()? != 0x51 {
            return Ok(None);
        }
        self.pos += 1;
        let at = self.pos - 1;
        let (index, slot) = self.ref_after()?;
        if slot.open {
            return Err(Error::Cycle { index, pos: at });
        }
        self.spend()?;
        let back = self.pos;
        self.pos = slot.pos;
        self.begin_replay(index);
        Ok(Some((back, index)))
    }

    #[inline]
    fn come_back(&mut self, from: Option<(usize, usize)>) {
        if let Some((back, index)) = from {
            self.refs[index].open = false;
            self.end_replay();
            self.pos = back;
        }
    }

    fn any<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.spend()?;
        let start = self.pos;
        let tag = self.byte()?;
        // One jump on the tag (the forms are disjoint ranges of it).
        match tag {
            b'N' => visitor.visit_unit(),
            b'T' => visitor.visit_bool(true),
            b'F' => visitor.visit_bool(false),
            0x80..=0xbf => visitor.visit_i32(i32::from(tag) - 0x90),
            0xc0..=0xd7 | b'I' => match self.int_after(tag)? {
                Some(i) => visitor.visit_i32(i),
                None => Err(self.unexpected(tag, "an int")),
            },
            0xd8..=0xff | 0x38..=0x3f | 0x59 | b'L' => match self.long_after(tag)? {
                Some(l) => visitor.visit_i64(l),
                None => Err(self.unexpected(tag, "a long")),
            },
            0x5b..=0x5f | b'D' => match self.double_after(tag)? {
                Some(d) => visitor.visit_f64(d),
                None => Err(self.unexpected(tag, "a double")),
            },
            0x4a | 0x4b => match self.date_after(tag)? {
                Some(ms) => visitor.visit_i64(ms),
                None => Err(self.unexpected(tag, "a date")),
            },
            0x00..=0x1f | 0x30..=0x33 | b'R' | b'S' => {
                if let Some(s) = self.borrowed_ascii(tag)? {
                    return visitor.visit_borrowed_str(s);
                }
                let mut s = String::new();
                self.string_after(tag, &mut s)?;
                visitor.visit_string(s)
            }
            0x20..=0x2f | 0x34..=0x37 | b'A' | b'B' => {
                visitor.visit_byte_buf(self.binary_after(tag)?)
            }
            b'H' | b'M' => {
                let slot = self.open_slot(start);
                self.enter()?;
                if tag == b'M' {
                    self.read_type()?;
                }
                let v = visitor.visit_map(MapAccess { de: self })?;
                if self.byte()? != b'Z' {
                    return Err(Error::Message("map entries left unread".into()));
                }
                self.leave();
                self.close_slot(slot);
                Ok(v)
            }
            b'O' | 0x60..=0x6f => {
                let class = self.instance_class(tag)?;
                let slot = self.open_slot(start);
                self.enter()?;
                let fields = self.class_fields(class);
                let v = visitor.visit_map(ObjectAccess {
                    de: self,
                    next: fields.start,
                    end: fields.end,
                })?;
                self.leave();
                self.close_slot(slot);
                Ok(v)
            }
            _ => {
                let slot = self.open_slot(start);
                let Some((kind, _type)) = self.list_after(tag)? else {
                    return Err(Error::UnexpectedTag {
                        tag,
                        pos: start,
                        expected: "the start of a value",
                    });
                };
                self.enter()?;
                let left = match kind {
                    ListKind::Fixed(n) => Some(n),
                    ListKind::Variable => None,
                };
                let v = visitor.visit_seq(SeqAccess { de: self, left })?;
                if left.is_none() && self.byte()? != b'Z' {
                    return Err(Error::Message("list items left unread".into()));
                }
                self.leave();
                self.close_slot(slot);
                Ok(v)
            }
        }
    }

    /// Reads a one-chunk ASCII string at once (the usual form of a Java string); `None`
    /// when the next value is anything else.
    #[inline]
    fn plain_str(&mut self) -> Result<Option<&'de str>> {
        let tag = self.peek()?;
        if !matches!(tag, 0x00..=0x1f | 0x30..=0x33 | b'S') {
            return Ok(None);
        }
        let at = self.pos;
        self.pos += 1;
        match self.borrowed_ascii(tag)? {
            Some(s) => {
                self.spend()?;
                Ok(Some(s))
            }
            None => {
                self.pos = at;
                Ok(None)
            }
        }
    }
}

macro_rules! via_any {
    ($($name:ident)*) => {
        $(fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = Error;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let back = self.follow()?;
        let r = self.any(visitor);
        self.come_back(back);
        r
    }

    via_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any deserialize_i128 deserialize_u128
    }

    #[inline]
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let tag = self.peek()?;
        if let 0x80..=0xbf = tag {
            self.spend()?;
            self.pos += 1;
            return visitor.visit_i32(i32::from(tag) - 0x90);
        }
        self.deserialize_any(visitor)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.plain_str()? {
            Some(s) => visitor.visit_borrowed_str(s),
            None => self.deserialize_any(visitor),
        }
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.plain_str()? {
            Some(s) => visitor.visit_borrowed_str(s),
            None => self.deserialize_any(visitor),
        }
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == b'N' {
            self.pos += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == DATE_TOKEN {
            let tag = self.byte()?;
            let ms = match self.date_after(tag)? {
                Some(ms) => ms,
                None => match self.long_after(tag)? {
                    Some(l) => l,
                    None => return Err(self.unexpected(tag, "a date")),
                },
            };
            return visitor.visit_newtype_struct(ms.into_deserializer());
        }
        if name == crate::value_serde::VALUE_TOKEN {
            // A `Value` is read whole, exactly as it is in the stream.
            let v = self.read_value()?;
            crate::value_serde::DECODED.with(|p| *p.borrow_mut() = Some(v));
            return visitor.visit_unit();
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let back = self.follow()?;
        let r = self.enum_value(visitor);
        self.come_back(back);
        r
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl<'de> Decoder<'de> {
    fn enum_value<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.spend()?;
        let start = self.pos;
        let tag = self.peek()?;
        if Self::is_string_tag(tag) {
            return match self.read_str()? {
                Cow::Borrowed(name) => visitor.visit_enum(BorrowedStrDeserializer::new(name)),
                Cow::Owned(name) => visitor.visit_enum(name.into_deserializer()),
            };
        }
        match tag {
            b'O' | 0x60..=0x6f => {
                // A Java enum constant: an object whose `name` field names the variant.
                self.pos += 1;
                let class = self.instance_class(tag)?;
                let slot = self.open_slot(start);
                self.enter()?;
                let mut name = None;
                for i in self.class_fields(class) {
                    if self.field_names[i] == "name" {
                        name = Some(self.read_str()?);
                    } else {
                        self.skip_value()?;
                    }
                }
                self.leave();
                self.close_slot(slot);
                match name {
                    Some(Cow::Borrowed(name)) => {
                        visitor.visit_enum(BorrowedStrDeserializer::new(name))
                    }
                    Some(Cow::Owned(name)) => visitor.visit_enum(name.into_deserializer()),
                    None => Err(Error::Message(format!(
                        "object of class {} has no `name` field",
                        self.classes[class].name
                    ))),
                }
            }
            b'H' | b'M' => {
                self.pos += 1;
                let slot = self.open_slot(start);
                self.enter()?;
                if tag == b'M' {
                    self.read_type()?;
                }
                let v = visitor.visit_enum(EnumAccess { de: self })?;
                if self.byte()? != b'Z' {
                    return Err(Error::Message(
                        "an enum variant map must hold exactly one entry".into(),
                    ));
                }
                self.leave();
                self.close_slot(slot);
                Ok(v)
            }
            _ => {
                self.pos += 1;
                Err(self.unexpected(tag, "an enum (string, object or one-entry map)"))
            }
        }
    }
}

struct SeqAccess<'a, 'de> {
    de: &'a mut Decoder<'de>,
    left: Option<usize>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, 'de> {
    type Error = Error;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match &mut self.left {
            Some(0) => return Ok(None),
            Some(n) => *n -= 1,
            None => {
                if self.de.peek()? == b'Z' {
                    return Ok(None);
                }
            }
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        self.left.map(|n| self.de.capacity(n))
    }
}

struct MapAccess<'a, 'de> {
    de: &'a mut Decoder<'de>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, 'de> {
    type Error = Error;
    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.de.peek()? == b'Z' {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
}

/// The fields of an object: their names are `next..end` of the decoder's `field_names`.
struct ObjectAccess<'a, 'de> {
    de: &'a mut Decoder<'de>,
    next: usize,
    end: usize,
}

impl<'de> de::MapAccess<'de> for ObjectAccess<'_, 'de> {
    type Error = Error;
    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.next == self.end {
            return Ok(None);
        }
        let i = self.next;
        self.next += 1;
        match &self.de.field_names[i] {
            Cow::Borrowed(name) => seed
                .deserialize(BorrowedStrDeserializer::<Error>::new(name))
                .map(Some),
            Cow::Owned(name) => seed
                .deserialize(StrDeserializer::<Error>::new(name))
                .map(Some),
        }
    }
    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.end - self.next)
    }
}

struct EnumAccess<'a, 'de> {
    de: &'a mut Decoder<'de>,
}

impl<'a, 'de> de::EnumAccess<'de> for EnumAccess<'a, 'de> {
    type Error = Error;
    type Variant = &'a mut Decoder<'de>;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self::Variant)> {
        let v = seed.deserialize(&mut *self.de)?;
        Ok((v, self.de))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = Error;
    fn unit_variant(self) -> Result<()> {
        de::Deserialize::deserialize(self)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_any(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}
