//! The Hessian 2.0 writer: compact forms chosen exactly as Caucho's `Hessian2Output` does,
//! so that values with one canonical form come out byte-identical to Java's.

use std::collections::HashMap;

use crate::value::{List, Map, Object, Value};

mod tables;

pub(crate) use tables::{same_name, Fields, StructClass};
use tables::{EnumRef, SmallList};

/// Longest chunk of a string or binary before a continuation chunk (`R` / `A`).
const CHUNK: usize = 0x8000;

/// A Hessian 2.0 output stream.
///
/// One encoder is one stream: class definitions, type names and back-reference numbers are
/// shared by every value written to it, as in Java's `Hessian2Output` (a Dubbo request
/// body is one stream of several values). Use [`Encoder::reset`] to start a new stream
/// while keeping the buffer's allocation.
#[derive(Debug, Default)]
pub struct Encoder {
    pub(crate) buf: Vec<u8>,
    /// Class definitions written from [`Value`]s: (class, fields) → index. Created when
    /// first needed, as are the other maps.
    value_classes: Option<HashMap<(String, Vec<String>), usize>>,
    /// Class definitions written from serde structs and enums (a stream has few: a list
    /// beats a map).
    struct_classes: SmallList<StructClass, 8>,
    pub(crate) class_count: usize,
    types: Option<HashMap<String, usize>>,
    /// Lists, maps and objects begun so far (the numbers back-references use).
    pub(crate) refs: u32,
    /// Java class names for serde names.
    pub(crate) renames: Option<HashMap<&'static str, String>>,
    /// Set when a struct was written before its fields were known (see `to_bytes`).
    pub(crate) relearn: bool,
    /// The next i64 is a date (set by `Date`'s serialization).
    pub(crate) date_next: bool,
    /// Enum constants written so far, with their reference numbers: Java enum constants
    /// are singletons, so a second occurrence is written as a reference.
    enum_refs: SmallList<EnumRef, 4>,
}

impl Encoder {
    /// An empty stream.
    #[inline]
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// An empty stream writing after the bytes already in `buf`.
    #[inline]
    pub fn with_buffer(buf: Vec<u8>) -> Encoder {
        Encoder {
            buf,
            ..Encoder::default()
        }
    }

    /// Forgets class definitions, types and references, and clears the buffer.
    pub fn reset(&mut self) {
        self.buf.clear();
        if let Some(v) = &mut self.value_classes {
            v.clear();
        }
        self.struct_classes.clear();
        self.class_count = 0;
        if let Some(t) = &mut self.types {
            t.clear();
        }
        self.enum_refs.clear();
        self.refs = 0;
    }

    /// The bytes written so far.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes written, consuming the encoder.
    #[inline]
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes `N`.
    #[inline]
    pub fn write_null(&mut self) {
        self.buf.push(b'N');
    }

    /// Writes `T` or `F`.
    #[inline]
    pub fn write_bool(&mut self, v: bool) {
        self.buf.push(if v { b'T' } else { b'F' });
    }

    /// Writes an int in its shortest form.
    #[inline]
    pub fn write_int(&mut self, v: i32) {
        let b = &mut self.buf;
        if (-0x10..=0x2f).contains(&v) {
            b.push((v + 0x90) as u8);
        } else if (-0x800..=0x7ff).contains(&v) {
            b.extend_from_slice(&[(0xc8 + (v >> 8)) as u8, v as u8]);
        } else if (-0x40000..=0x3ffff).contains(&v) {
            b.extend_from_slice(&[(0xd4 + (v >> 16)) as u8, (v >> 8) as u8, v as u8]);
        } else {
            b.push(b'I');
            b.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Writes a long in its shortest form.
    #[inline]
    pub fn write_long(&mut self, v: i64) {
        let b = &mut self.buf;
        if (-0x08..=0x0f).contains(&v) {
            b.push((v + 0xe0) as u8);
        } else if (-0x800..=0x7ff).contains(&v) {
            b.extend_from_slice(&[(0xf8 + (v >> 8)) as u8, v as u8]);
        } else if (-0x40000..=0x3ffff).contains(&v) {
            b.extend_from_slice(&[(0x3c + (v >> 16)) as u8, (v >> 8) as u8, v as u8]);
        } else if i32::try_from(v).is_ok() {
            b.push(0x59);
            b.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            b.push(b'L');
            b.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Writes a double in its shortest form (Caucho's choice: `0.0`, `1.0`, byte, short,
    /// thousandths in an int, or the full 8 bytes).
    pub fn write_double(&mut self, v: f64) {
        let b = &mut self.buf;
        // Java's (int) cast: saturating, NaN → 0, exactly as Rust's `as`.
        let int_value = v as i32;
        if f64::from(int_value) == v {
            if int_value == 0 {
                b.push(0x5b);
                return;
            }
            if int_value == 1 {
                b.push(0x5c);
                return;
            }
            if (-0x80..0x80).contains(&int_value) {
                b.extend_from_slice(&[0x5d, int_value as u8]);
                return;
            }
            if (-0x8000..0x8000).contains(&int_value) {
                b.extend_from_slice(&[0x5e, (int_value >> 8) as u8, int_value as u8]);
                return;
            }
        }
        let mills = (v * 1000.0) as i32;
        if 0.001 * f64::from(mills) == v {
            b.push(0x5f);
            b.extend_from_slice(&mills.to_be_bytes());
            return;
        }
        b.push(b'D');
        b.extend_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Writes a date (milliseconds since the epoch): in minutes (`0x4b`) when it is a whole
    /// minute that fits, else in milliseconds (`0x4a`).
    #[inline]
    pub fn write_date(&mut self, millis: i64) {
        if millis % 60_000 == 0 {
            let minutes = millis / 60_000;
            if let Ok(m) = i32::try_from(minutes) {
                self.buf.push(0x4b);
                self.buf.extend_from_slice(&m.to_be_bytes());
                return;
            }
        }
        self.buf.push(0x4a);
        self.buf.extend_from_slice(&millis.to_be_bytes());
    }

    /// Writes a string. Lengths count UTF-16 units; characters outside the Basic
    /// Multilingual Plane are written as two 3-byte surrogates, as Java does.
    #[inline]
    pub fn write_str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        if bytes.len() <= 0x1f && bytes.is_ascii() {
            // The usual case: one byte of length, then the characters.
            self.buf.reserve(bytes.len() + 1);
            self.buf.push(bytes.len() as u8);
            self.buf.extend_from_slice(bytes);
            return;
        }
        self.write_long_str(s);
    }

    fn write_long_str(&mut self, s: &str) {
        if s.is_ascii() {
            let bytes = s.as_bytes();
            let mut rest = bytes;
            while rest.len() > CHUNK {
                self.buf.push(b'R');
                self.buf.extend_from_slice(&(CHUNK as u16).to_be_bytes());
                self.buf.extend_from_slice(&rest[..CHUNK]);
                rest = &rest[CHUNK..];
            }
            self.string_header(rest.len());
            self.buf.extend_from_slice(rest);
            return;
        }
        let total: usize = s.chars().map(char::len_utf16).sum();
        let mut chars = s.chars().peekable();
        let mut left = total;
        while left > CHUNK {
            // Fill one chunk, never splitting a surrogate pair.
            let header = self.buf.len();
            self.buf.extend_from_slice(&[b'R', 0, 0]);
            let mut units = 0;
            while let Some(&c) = chars.peek() {
                let n = c.len_utf16();
                if units + n > CHUNK {
                    break;
                }
                units += n;
                self.push_char(c);
                chars.next();
            }
            self.buf[header + 1..header + 3].copy_from_slice(&(units as u16).to_be_bytes());
            left -= units;
        }
        self.string_header(left);
        for c in chars {
            self.push_char(c);
        }
    }

    fn string_header(&mut self, units: usize) {
        if units <= 0x1f {
            self.buf.push(units as u8);
        } else if units <= 0x3ff {
            self.buf
                .extend_from_slice(&[0x30 + (units >> 8) as u8, units as u8]);
        } else {
            self.buf.push(b'S');
            self.buf.extend_from_slice(&(units as u16).to_be_bytes());
        }
    }

    fn push_char(&mut self, c: char) {
        let cp = c as u32;
        if cp < 0x10000 {
            let mut tmp = [0u8; 4];
            self.buf
                .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let u = u32::from(*u);
                self.buf.extend_from_slice(&[
                    (0xe0 | (u >> 12)) as u8,
                    (0x80 | ((u >> 6) & 0x3f)) as u8,
                    (0x80 | (u & 0x3f)) as u8,
                ]);
            }
        }
    }

    /// Appends bytes already in Hessian form, such as arguments received from another
    /// stream. They must not refer to class definitions, types or references of this
    /// stream: copy them only into a stream that has written none of those yet.
    pub fn write_raw(&mut self, encoded: &[u8]) {
        self.buf.extend_from_slice(encoded);
    }

    /// Writes binary data (`byte[]`).
    #[inline]
    pub fn write_bytes(&mut self, data: &[u8]) {
        let mut rest = data;
        while rest.len() > CHUNK {
            self.buf.push(b'A');
            self.buf.extend_from_slice(&(CHUNK as u16).to_be_bytes());
            self.buf.extend_from_slice(&rest[..CHUNK]);
            rest = &rest[CHUNK..];
        }
        let n = rest.len();
        if n <= 0x0f {
            self.buf.push(0x20 + n as u8);
        } else if n <= 0x3ff {
            self.buf
                .extend_from_slice(&[0x34 + (n >> 8) as u8, n as u8]);
        } else {
            self.buf.push(b'B');
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        self.buf.extend_from_slice(rest);
    }

    /// Writes a type name, or its number when it was written before in this stream.
    fn write_type(&mut self, type_name: &str) {
        let types = self.types.get_or_insert_with(HashMap::new);
        if let Some(&i) = types.get(type_name) {
            self.write_int(i as i32);
        } else {
            let n = types.len();
            types.insert(type_name.to_string(), n);
            self.write_str(type_name);
        }
    }

    /// Begins a list of `len` items (then write the items; no end marker). Counts as one
    /// reference.
    #[inline]
    pub fn write_list_begin(&mut self, len: usize, type_name: Option<&str>) {
        self.refs += 1;
        match (len <= 7, type_name) {
            (true, Some(t)) => {
                self.buf.push(0x70 + len as u8);
                self.write_type(t);
            }
            (true, None) => self.buf.push(0x78 + len as u8),
            (false, Some(t)) => {
                self.buf.push(b'V');
                self.write_type(t);
                self.write_int(len as i32);
            }
            (false, None) => {
                self.buf.push(0x58);
                self.write_int(len as i32);
            }
        }
    }

    /// Begins a list whose length is not known yet; finish it with [`Encoder::write_end`].
    pub fn write_list_begin_variable(&mut self, type_name: Option<&str>) {
        self.refs += 1;
        match type_name {
            Some(t) => {
                self.buf.push(0x55);
                self.write_type(t);
            }
            None => self.buf.push(0x57),
        }
    }

    /// Begins a map (`H`, or `M` with a type); write keys and values, then
    /// [`Encoder::write_end`]. Counts as one reference.
    #[inline]
    pub fn write_map_begin(&mut self, type_name: Option<&str>) {
        self.refs += 1;
        match type_name {
            Some(t) => {
                self.buf.push(b'M');
                self.write_type(t);
            }
            None => self.buf.push(b'H'),
        }
    }

    /// Ends a map or a variable-length list (`Z`).
    #[inline]
    pub fn write_end(&mut self) {
        self.buf.push(b'Z');
    }

    /// Begins an object of `class` with `fields`: writes the class definition the first
    /// time this (class, fields) pair appears in the stream, then the instance header. Write
    /// the field values next, in the same order. Counts as one reference.
    pub fn write_object_begin(&mut self, class: &str, fields: &[&str]) {
        let key = (
            class.to_string(),
            fields.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        );
        let index = match self.value_classes.as_ref().and_then(|v| v.get(&key)) {
            Some(&i) => i,
            None => {
                let i = self.define_class(class, fields.iter().copied());
                self.value_classes
                    .get_or_insert_with(HashMap::new)
                    .insert(key, i);
                i
            }
        };
        self.write_instance(index);
    }

    pub(crate) fn define_class<'f>(
        &mut self,
        class: &str,
        fields: impl ExactSizeIterator<Item = &'f str>,
    ) -> usize {
        self.buf.push(b'C');
        self.write_str(class);
        self.write_int(fields.len() as i32);
        for f in fields {
            self.write_str(f);
        }
        let i = self.class_count;
        self.class_count += 1;
        i
    }

    /// Appends a class definition already encoded (`C`, name, field count, field names).
    #[inline]
    pub(crate) fn define_class_encoded(&mut self, definition: &[u8]) -> usize {
        self.buf.extend_from_slice(definition);
        let i = self.class_count;
        self.class_count += 1;
        i
    }

    #[inline]
    pub(crate) fn write_instance(&mut self, index: usize) {
        self.refs += 1;
        if index <= 0x0f {
            self.buf.push(0x60 + index as u8);
        } else {
            self.buf.push(b'O');
            self.write_int(index as i32);
        }
    }

    /// Writes a back-reference to the `index`-th list, map or object of the stream.
    #[inline]
    pub fn write_ref(&mut self, index: u32) {
        self.buf.push(0x51);
        self.write_int(index as i32);
    }

    /// Writes any [`Value`].
    pub fn write_value(&mut self, value: &Value) {
        match value {
            Value::Null => self.write_null(),
            Value::Bool(b) => self.write_bool(*b),
            Value::Int(i) => self.write_int(*i),
            Value::Long(l) => self.write_long(*l),
            Value::Double(d) => self.write_double(*d),
            Value::String(s) => self.write_str(s),
            Value::Binary(b) => self.write_bytes(b),
            Value::Date(ms) => self.write_date(*ms),
            Value::List(List { type_name, items }) => {
                self.write_list_begin(items.len(), type_name.as_deref());
                for item in items {
                    self.write_value(item);
                }
            }
            Value::Map(Map { type_name, entries }) => {
                self.write_map_begin(type_name.as_deref());
                for (k, v) in entries {
                    self.write_value(k);
                    self.write_value(v);
                }
                self.write_end();
            }
            Value::Object(Object { class, fields }) => {
                let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
                self.write_object_begin(class, &names);
                for (_, v) in fields {
                    self.write_value(v);
                }
            }
            Value::Ref(i) => self.write_ref(*i),
        }
    }
}

/// Encodes one value as a stream of its own.
pub fn encode_value(value: &Value) -> Vec<u8> {
    let mut e = Encoder::new();
    e.write_value(value);
    e.into_bytes()
}
