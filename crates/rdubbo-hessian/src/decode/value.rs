//! Containers and whole values: maps read entry by entry, type names, class definitions,
//! lists, back-references, and reading or stepping over any value.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::value::{List, Map, Object, Value};

use super::{ClassDef, Decoder, ListKind, MapReader, Slot};

impl<'de> Decoder<'de> {
    /// If the next value is a map (`H`, or `M` and its type), reads its start and returns
    /// it: read its keys and values with the other read methods until
    /// [`Decoder::end_map`] says it ended. `None`, with nothing read, for any other value.
    ///
    /// ```
    /// use rdubbo_hessian::{Decoder, Encoder};
    ///
    /// let mut e = Encoder::new();
    /// e.write_map_begin(None);
    /// e.write_str("k");
    /// e.write_str("v");
    /// e.write_end();
    /// let bytes = e.into_bytes();
    /// let mut d = Decoder::new(&bytes);
    /// let map = d.begin_map().unwrap().unwrap();
    /// let mut pairs = Vec::new();
    /// while !d.end_map(&map).unwrap() {
    ///     let k = d.try_read_str().unwrap().unwrap();
    ///     let v = d.try_read_str().unwrap().unwrap();
    ///     pairs.push((k, v));
    /// }
    /// assert_eq!(pairs, [("k".into(), "v".into())]);
    /// assert!(d.is_at_end());
    /// ```
    pub fn begin_map(&mut self) -> Result<Option<MapReader>> {
        let tag = self.peek()?;
        if tag != b'H' && tag != b'M' {
            return Ok(None);
        }
        self.spend()?;
        let start = self.pos;
        self.pos += 1;
        let slot = self.open_slot(start);
        self.enter()?;
        if tag == b'M' {
            self.read_type()?;
        }
        Ok(Some(MapReader { slot }))
    }

    /// Whether `map` (begun by [`Decoder::begin_map`]) is at its end; if so, reads its end
    /// marker.
    pub fn end_map(&mut self, map: &MapReader) -> Result<bool> {
        if self.peek()? != b'Z' {
            return Ok(false);
        }
        self.pos += 1;
        self.leave();
        self.close_slot(map.slot);
        Ok(true)
    }

    /// Reads a type name or a type reference.
    pub(crate) fn read_type(&mut self) -> Result<Cow<'de, str>> {
        let tag = self.peek()?;
        if Self::is_string_tag(tag) {
            let t = self.read_str()?;
            if self.replay == 0 {
                self.types.push(t.clone());
            }
            Ok(t)
        } else {
            let at = self.pos;
            let i = self.read_len()?;
            self.types
                .get(i)
                .cloned()
                .ok_or(Error::UnknownType { index: i, pos: at })
        }
    }

    /// Reads a class definition after its `C`.
    pub(crate) fn class_def(&mut self) -> Result<()> {
        let name = self.read_str()?;
        let n = self.read_len()?;
        if self.replay > 0 {
            // Read again while following a reference: defined already.
            for _ in 0..n {
                self.read_str()?;
            }
            return Ok(());
        }
        let start = self.field_names.len();
        for _ in 0..n {
            let field = self.read_str()?;
            self.field_names.push(field);
        }
        self.classes.push(ClassDef {
            name,
            fields: start..start + n,
        });
        Ok(())
    }

    /// The class definition (its index) of an instance, after its tag (`O` or
    /// `0x60..0x6f`).
    #[inline]
    pub(crate) fn instance_class(&mut self, tag: u8) -> Result<usize> {
        let at = self.pos - 1;
        let index = if tag == b'O' {
            self.read_len()?
        } else {
            (tag - 0x60) as usize
        };
        if index < self.classes.len() {
            Ok(index)
        } else {
            Err(Error::UnknownClass { index, pos: at })
        }
    }

    /// The field names of class definition `class`.
    #[inline]
    pub(crate) fn class_fields(&self, class: usize) -> std::ops::Range<usize> {
        self.classes[class].fields.clone()
    }

    /// The list form a tag begins, with its type name; None if the tag begins no list.
    pub(crate) fn list_after(
        &mut self,
        tag: u8,
    ) -> Result<Option<(ListKind, Option<Cow<'de, str>>)>> {
        Ok(Some(match tag {
            0x55 => (ListKind::Variable, Some(self.read_type()?)),
            b'V' => {
                let t = self.read_type()?;
                (ListKind::Fixed(self.read_len()?), Some(t))
            }
            0x57 => (ListKind::Variable, None),
            0x58 => (ListKind::Fixed(self.read_len()?), None),
            0x70..=0x77 => (
                ListKind::Fixed((tag - 0x70) as usize),
                Some(self.read_type()?),
            ),
            0x78..=0x7f => (ListKind::Fixed((tag - 0x78) as usize), None),
            _ => return Ok(None),
        }))
    }

    /// A capacity for `n` announced items, bounded by the bytes left (every item takes one).
    #[inline]
    pub(crate) fn capacity(&self, n: usize) -> usize {
        n.min(self.input.len().saturating_sub(self.pos))
    }

    /// Reads a back-reference index after its tag and checks it.
    pub(crate) fn ref_after(&mut self) -> Result<(usize, Slot)> {
        let at = self.pos - 1;
        let index = self.read_len()?;
        let slot = *self
            .refs
            .get(index)
            .ok_or(Error::UnknownRef { index, pos: at })?;
        Ok((index, slot))
    }

    /// Reads the next value.
    pub fn read_value(&mut self) -> Result<Value> {
        self.spend()?;
        let start = self.pos;
        let tag = self.byte()?;
        match tag {
            b'N' => return Ok(Value::Null),
            b'T' => return Ok(Value::Bool(true)),
            b'F' => return Ok(Value::Bool(false)),
            _ => {}
        }
        if let Some(i) = self.int_after(tag)? {
            return Ok(Value::Int(i));
        }
        if let Some(l) = self.long_after(tag)? {
            return Ok(Value::Long(l));
        }
        if let Some(d) = self.double_after(tag)? {
            return Ok(Value::Double(d));
        }
        if let Some(ms) = self.date_after(tag)? {
            return Ok(Value::Date(ms));
        }
        if Self::is_string_tag(tag) {
            let mut s = String::new();
            self.string_after(tag, &mut s)?;
            return Ok(Value::String(s));
        }
        if Self::is_binary_tag(tag) {
            return Ok(Value::Binary(self.binary_after(tag)?));
        }
        match tag {
            b'C' => {
                self.class_def()?;
                self.budget += 1;
                self.read_value()
            }
            0x51 => {
                // Shared and cyclic graphs stay what they are: a back-reference, never a
                // copy (a copy would change identity for a Java peer, and lets a small
                // input expand without bound).
                let (_, slot) = self.ref_after()?;
                Ok(Value::Ref(slot.emitted))
            }
            b'H' | b'M' => {
                let slot = self.open_slot(start);
                self.enter()?;
                let type_name = if tag == b'M' {
                    Some(self.read_type()?.into_owned())
                } else {
                    None
                };
                let mut entries = Vec::new();
                while self.peek()? != b'Z' {
                    let k = self.read_value()?;
                    let v = self.read_value()?;
                    entries.push((k, v));
                }
                self.pos += 1;
                self.leave();
                self.close_slot(slot);
                Ok(Value::Map(Map { type_name, entries }))
            }
            b'O' | 0x60..=0x6f => {
                let class = self.instance_class(tag)?;
                let slot = self.open_slot(start);
                self.enter()?;
                let names = self.class_fields(class);
                let mut fields = Vec::with_capacity(names.len());
                for i in names {
                    let name = self.field_names[i].to_string();
                    fields.push((name, self.read_value()?));
                }
                self.leave();
                self.close_slot(slot);
                Ok(Value::Object(Object {
                    class: self.classes[class].name.to_string(),
                    fields,
                }))
            }
            _ => {
                let slot = self.open_slot(start);
                let Some((kind, type_name)) = self.list_after(tag)? else {
                    return Err(self.unexpected_at(start, tag));
                };
                self.enter()?;
                let items = match kind {
                    ListKind::Fixed(n) => {
                        let mut items = Vec::with_capacity(self.capacity(n));
                        for _ in 0..n {
                            items.push(self.read_value()?);
                        }
                        items
                    }
                    ListKind::Variable => {
                        let mut items = Vec::new();
                        while self.peek()? != b'Z' {
                            items.push(self.read_value()?);
                        }
                        self.pos += 1;
                        items
                    }
                };
                self.leave();
                self.close_slot(slot);
                Ok(Value::List(List {
                    type_name: type_name.map(Cow::into_owned),
                    items,
                }))
            }
        }
    }

    /// Steps over the next value without building it (class definitions and
    /// references it holds are still recorded, so the stream reads on correctly).
    pub fn skip_value(&mut self) -> Result<()> {
        self.spend()?;
        let start = self.pos;
        let tag = self.byte()?;
        // Nulls, booleans, numbers and dates: how many bytes follow the tag.
        let fixed = match tag {
            b'N' | b'T' | b'F' | 0x80..=0xbf | 0xd8..=0xef | 0x5b | 0x5c => Some(0),
            0xc0..=0xcf | 0xf0..=0xff | 0x5d => Some(1),
            0xd0..=0xd7 | 0x38..=0x3f | 0x5e => Some(2),
            b'I' | 0x59 | 0x5f | 0x4b => Some(4),
            b'L' | b'D' | 0x4a => Some(8),
            _ => None,
        };
        if let Some(n) = fixed {
            self.take(n)?;
            return Ok(());
        }
        if Self::is_string_tag(tag) {
            return self.skip_string_after(tag);
        }
        if Self::is_binary_tag(tag) {
            return self.skip_binary_after(tag);
        }
        match tag {
            b'C' => {
                self.class_def()?;
                self.budget += 1;
                self.skip_value()
            }
            0x51 => self.ref_after().map(drop),
            b'H' | b'M' => {
                let slot = self.open_slot(start);
                self.enter()?;
                if tag == b'M' {
                    self.read_type()?;
                }
                while self.peek()? != b'Z' {
                    self.skip_value()?;
                    self.skip_value()?;
                }
                self.pos += 1;
                self.leave();
                self.close_slot(slot);
                Ok(())
            }
            b'O' | 0x60..=0x6f => {
                let class = self.instance_class(tag)?;
                let slot = self.open_slot(start);
                self.enter()?;
                for _ in self.class_fields(class) {
                    self.skip_value()?;
                }
                self.leave();
                self.close_slot(slot);
                Ok(())
            }
            _ => {
                let slot = self.open_slot(start);
                let Some((kind, _)) = self.list_after(tag)? else {
                    return Err(self.unexpected_at(start, tag));
                };
                self.enter()?;
                match kind {
                    ListKind::Fixed(n) => {
                        for _ in 0..n {
                            self.skip_value()?;
                        }
                    }
                    ListKind::Variable => {
                        while self.peek()? != b'Z' {
                            self.skip_value()?;
                        }
                        self.pos += 1;
                    }
                }
                self.leave();
                self.close_slot(slot);
                Ok(())
            }
        }
    }

    fn unexpected_at(&self, pos: usize, tag: u8) -> Error {
        Error::UnexpectedTag {
            tag,
            pos,
            expected: "the start of a value",
        }
    }
}
