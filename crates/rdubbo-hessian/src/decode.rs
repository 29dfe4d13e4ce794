//! The Hessian 2.0 reader.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::value::{List, Map, Object, Value};

/// Default limit on nesting of lists, maps and objects.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// A list that keeps its first `N` items inline: a stream usually has few class
/// definitions, field names and containers, and a decoder should not allocate for them.
#[derive(Debug)]
pub(crate) struct Small<T, const N: usize> {
    inline: [T; N],
    len: usize,
    more: Vec<T>,
}

impl<T: Default, const N: usize> Small<T, N> {
    fn new() -> Self {
        Small {
            inline: std::array::from_fn(|_| T::default()),
            len: 0,
            more: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn push(&mut self, item: T) {
        if self.len < N {
            self.inline[self.len] = item;
        } else {
            self.more.push(item);
        }
        self.len += 1;
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i < self.len.min(N) {
            Some(&self.inline[i])
        } else {
            self.more.get(i.checked_sub(N)?)
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i < self.len.min(N) {
            Some(&mut self.inline[i])
        } else {
            self.more.get_mut(i.checked_sub(N)?)
        }
    }
}

impl<T: Default, const N: usize> std::ops::Index<usize> for Small<T, N> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        self.get(i).expect("index within the list")
    }
}

impl<T: Default, const N: usize> std::ops::IndexMut<usize> for Small<T, N> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        self.get_mut(i).expect("index within the list")
    }
}

/// A class definition seen in the stream. Its name and field names are borrowed from the
/// input (when they are plain ASCII, as class and field names are); the field names are
/// `fields` of the decoder's `field_names`.
#[derive(Debug, Default)]
pub(crate) struct ClassDef<'de> {
    pub(crate) name: Cow<'de, str>,
    pub(crate) fields: std::ops::Range<usize>,
}

/// A list, map or object begun in the stream: where it starts, the number its instance was
/// produced under (see `Decoder::emitted`), and whether it is still being read (a
/// reference to it then is a cycle).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Slot {
    pub(crate) pos: usize,
    pub(crate) emitted: u32,
    pub(crate) open: bool,
}

/// Which container a tag begins.
pub(crate) enum ListKind {
    /// Items up to `Z`.
    Variable,
    /// This many items.
    Fixed(usize),
}

/// A map being read entry by entry (see [`Decoder::begin_map`]).
#[derive(Debug)]
pub struct MapReader {
    slot: Option<usize>,
}

/// A Hessian 2.0 input stream over a byte slice.
///
/// One decoder is one stream: class definitions, type names and back-references carry
/// from one value to the next, as in a Dubbo request body. Every length in the input is
/// checked against the bytes that are left before anything is allocated; nesting is limited
/// ([`Decoder::max_depth`]) and so is the number of values back-references may expand to
/// ([`Decoder::max_values`]), so hostile input yields an [`Error`], never a panic or an
/// unbounded allocation.
#[derive(Debug)]
pub struct Decoder<'de> {
    pub(crate) input: &'de [u8],
    pub(crate) pos: usize,
    pub(crate) classes: Small<ClassDef<'de>, 4>,
    /// The field names of every class definition, one after the other.
    pub(crate) field_names: Small<Cow<'de, str>, 16>,
    pub(crate) types: Vec<Cow<'de, str>>,
    pub(crate) refs: Small<Slot, 8>,
    /// Greater than zero while re-reading a referenced value: nothing is defined then.
    pub(crate) replay: u32,
    /// While re-reading: the slot number of the next container met, per nested re-read
    /// (the re-read meets the same containers, in the same order, as the first read).
    pub(crate) replay_next: Vec<usize>,
    /// Containers produced so far, copies of referenced ones included: the numbering a
    /// [`Value::Ref`] uses, so that a decoded value encodes back consistently.
    emitted: u32,
    pub(crate) depth: usize,
    max_depth: usize,
    pub(crate) budget: usize,
    max_values: usize,
}

impl<'de> Decoder<'de> {
    /// A decoder reading `input` from its start.
    pub fn new(input: &'de [u8]) -> Decoder<'de> {
        let max_values = input.len().saturating_mul(2).saturating_add(1_000_000);
        Decoder {
            input,
            pos: 0,
            classes: Small::new(),
            field_names: Small::new(),
            types: Vec::new(),
            refs: Small::new(),
            replay: 0,
            replay_next: Vec::new(),
            emitted: 0,
            depth: 0,
            max_depth: DEFAULT_MAX_DEPTH,
            budget: max_values,
            max_values,
        }
    }

    /// Sets the nesting limit (default [`DEFAULT_MAX_DEPTH`]).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Sets how many values one stream may decode to, counting the copies that
    /// back-references expand to (default: twice the input length plus one million).
    pub fn max_values(mut self, n: usize) -> Self {
        self.max_values = n;
        self.budget = n;
        self
    }

    /// The read position.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether every byte has been read.
    pub fn is_at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'de [u8] {
        &self.input[self.pos.min(self.input.len())..]
    }

    #[inline]
    pub(crate) fn peek(&self) -> Result<u8> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(Error::Eof(self.pos))
    }

    #[inline]
    pub(crate) fn byte(&mut self) -> Result<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        let end = self.pos.checked_add(n).ok_or(Error::Eof(self.pos))?;
        if end > self.input.len() {
            return Err(Error::Eof(self.input.len()));
        }
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u16(&mut self) -> Result<usize> {
        Ok(u16::from_be_bytes(self.array()?) as usize)
    }

    pub(crate) fn unexpected(&self, tag: u8, expected: &'static str) -> Error {
        Error::UnexpectedTag {
            tag,
            pos: self.pos.saturating_sub(1),
            expected,
        }
    }

    #[inline]
    pub(crate) fn spend(&mut self) -> Result<()> {
        if self.budget == 0 {
            return Err(Error::TooLarge(self.max_values));
        }
        self.budget -= 1;
        Ok(())
    }

    #[inline]
    pub(crate) fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(Error::TooDeep(self.max_depth));
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Records a container starting at `pos` (or, while re-reading, finds the slot it
    /// had) and marks it open; returns its slot.
    pub(crate) fn open_slot(&mut self, pos: usize) -> Option<usize> {
        let slot = if self.replay > 0 {
            let next = self.replay_next.last_mut()?;
            let slot = *next;
            *next += 1;
            let s = self.refs.get_mut(slot)?;
            s.open = true;
            s.emitted = self.emitted;
            slot
        } else {
            self.refs.push(Slot {
                pos,
                emitted: self.emitted,
                open: true,
            });
            self.refs.len() - 1
        };
        self.emitted = self.emitted.saturating_add(1);
        Some(slot)
    }

    /// Starts re-reading the referenced container of `slot`.
    pub(crate) fn begin_replay(&mut self, slot: usize) {
        self.replay += 1;
        self.replay_next.push(slot);
    }

    /// Ends a re-read begun by [`Decoder::begin_replay`].
    pub(crate) fn end_replay(&mut self) {
        self.replay -= 1;
        self.replay_next.pop();
    }

    #[inline]
    pub(crate) fn close_slot(&mut self, slot: Option<usize>) {
        if let Some(i) = slot {
            self.refs[i].open = false;
        }
    }

    /// Reads an int in any of its forms, after its tag.
    #[inline]
    pub(crate) fn int_after(&mut self, tag: u8) -> Result<Option<i32>> {
        Ok(Some(match tag {
            0x80..=0xbf => i32::from(tag) - 0x90,
            0xc0..=0xcf => ((i32::from(tag) - 0xc8) << 8) | i32::from(self.byte()?),
            0xd0..=0xd7 => {
                let [b1, b2] = self.array()?;
                ((i32::from(tag) - 0xd4) << 16) | (i32::from(b1) << 8) | i32::from(b2)
            }
            b'I' => i32::from_be_bytes(self.array()?),
            _ => return Ok(None),
        }))
    }

    /// Reads a long in any of its forms, after its tag.
    #[inline]
    pub(crate) fn long_after(&mut self, tag: u8) -> Result<Option<i64>> {
        Ok(Some(match tag {
            0xd8..=0xef => i64::from(tag) - 0xe0,
            0xf0..=0xff => ((i64::from(tag) - 0xf8) << 8) | i64::from(self.byte()?),
            0x38..=0x3f => {
                let [b1, b2] = self.array()?;
                ((i64::from(tag) - 0x3c) << 16) | (i64::from(b1) << 8) | i64::from(b2)
            }
            0x59 => i64::from(i32::from_be_bytes(self.array()?)),
            b'L' => i64::from_be_bytes(self.array()?),
            _ => return Ok(None),
        }))
    }

    /// Reads a double in any of its forms, after its tag.
    #[inline]
    pub(crate) fn double_after(&mut self, tag: u8) -> Result<Option<f64>> {
        Ok(Some(match tag {
            0x5b => 0.0,
            0x5c => 1.0,
            0x5d => f64::from(self.byte()? as i8),
            0x5e => f64::from(i16::from_be_bytes(self.array()?)),
            0x5f => 0.001 * f64::from(i32::from_be_bytes(self.array()?)),
            b'D' => f64::from_bits(u64::from_be_bytes(self.array()?)),
            _ => return Ok(None),
        }))
    }

    /// Reads a date after its tag, in milliseconds.
    #[inline]
    pub(crate) fn date_after(&mut self, tag: u8) -> Result<Option<i64>> {
        Ok(Some(match tag {
            0x4a => i64::from_be_bytes(self.array()?),
            0x4b => i64::from(i32::from_be_bytes(self.array()?)) * 60_000,
            _ => return Ok(None),
        }))
    }

    /// Reads an int value (any int form; a long that fits is accepted too).
    #[inline]
    pub fn read_int(&mut self) -> Result<i32> {
        let tag = self.byte()?;
        if let Some(i) = self.int_after(tag)? {
            return Ok(i);
        }
        if let Some(l) = self.long_after(tag)? {
            return i32::try_from(l).map_err(|_| Error::OutOfRange {
                value: l.to_string(),
                target: "i32",
            });
        }
        Err(self.unexpected(tag, "an int"))
    }

    /// Reads a length or count: an int that must be ≥ 0.
    pub(crate) fn read_len(&mut self) -> Result<usize> {
        let at = self.pos;
        let n = self.read_int()?;
        usize::try_from(n).map_err(|_| Error::UnexpectedTag {
            tag: self.input[at],
            pos: at,
            expected: "a length ≥ 0",
        })
    }

    /// Whether `tag` starts a string.
    #[inline]
    pub(crate) fn is_string_tag(tag: u8) -> bool {
        matches!(tag, 0x00..=0x1f | 0x30..=0x33 | b'R' | b'S')
    }

    /// Reads a string after its first tag, into `out`.
    pub(crate) fn string_after(&mut self, mut tag: u8, out: &mut String) -> Result<()> {
        let mut pending: Option<u16> = None;
        loop {
            let (len, last) = match tag {
                0x00..=0x1f => (tag as usize, true),
                0x30..=0x33 => ((((tag - 0x30) as usize) << 8) | self.byte()? as usize, true),
                b'S' => (self.u16()?, true),
                b'R' => (self.u16()?, false),
                _ => return Err(self.unexpected(tag, "a string chunk")),
            };
            self.utf8_units(len, out, &mut pending)?;
            if last {
                break;
            }
            tag = self.byte()?;
        }
        if pending.is_some() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
        Ok(())
    }

    /// If the string at the read position is one chunk of ASCII, borrows it.
    #[inline]
    pub(crate) fn borrowed_ascii(&mut self, tag: u8) -> Result<Option<&'de str>> {
        let start = self.pos;
        let len = match tag {
            0x00..=0x1f => tag as usize,
            0x30..=0x33 => (((tag - 0x30) as usize) << 8) | self.byte()? as usize,
            b'S' => self.u16()?,
            _ => return Ok(None),
        };
        let body = self.pos;
        match self.input.get(body..body + len) {
            Some(s) if s.is_ascii() => {
                self.pos = body + len;
                Ok(Some(ascii_str(s)))
            }
            _ => {
                self.pos = start;
                Ok(None)
            }
        }
    }

    /// Reads a string after its tag: borrowed from the input when it is one chunk of ASCII.
    #[inline]
    pub(crate) fn str_after(&mut self, tag: u8) -> Result<Cow<'de, str>> {
        if let Some(s) = self.borrowed_ascii(tag)? {
            return Ok(Cow::Borrowed(s));
        }
        let mut s = String::new();
        self.string_after(tag, &mut s)?;
        Ok(Cow::Owned(s))
    }

    /// Reads a string value, borrowed from the input when it is one chunk of ASCII.
    #[inline]
    pub(crate) fn read_str(&mut self) -> Result<Cow<'de, str>> {
        let tag = self.byte()?;
        self.str_after(tag)
    }

    /// Reads the next value if it is a string: borrowed from the input when it is one
    /// chunk of ASCII (as names, versions and descriptors are), else decoded. `None`, with
    /// nothing read, when the next value is not a string.
    pub fn try_read_str(&mut self) -> Result<Option<Cow<'de, str>>> {
        let tag = self.peek()?;
        if !Self::is_string_tag(tag) {
            return Ok(None);
        }
        self.spend()?;
        self.pos += 1;
        self.str_after(tag).map(Some)
    }

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

    /// Steps over a string after its first tag.
    pub(crate) fn skip_string_after(&mut self, tag: u8) -> Result<()> {
        if self.borrowed_ascii(tag)?.is_some() {
            return Ok(());
        }
        let mut s = String::new();
        self.string_after(tag, &mut s)
    }

    /// Steps over binary data after its first tag.
    pub(crate) fn skip_binary_after(&mut self, mut tag: u8) -> Result<()> {
        loop {
            let (len, last) = match tag {
                0x20..=0x2f => ((tag - 0x20) as usize, true),
                0x34..=0x37 => ((((tag - 0x34) as usize) << 8) | self.byte()? as usize, true),
                b'B' => (self.u16()?, true),
                b'A' => (self.u16()?, false),
                _ => return Err(self.unexpected(tag, "a binary chunk")),
            };
            self.take(len)?;
            if last {
                return Ok(());
            }
            tag = self.byte()?;
        }
    }

    fn utf8_units(&mut self, n: usize, out: &mut String, pending: &mut Option<u16>) -> Result<()> {
        if pending.is_none() {
            if let Some(s) = self.input.get(self.pos..self.pos + n) {
                if s.is_ascii() {
                    out.push_str(ascii_str(s));
                    self.pos += n;
                    return Ok(());
                }
            }
        }
        out.reserve(n.min(self.input.len() - self.pos.min(self.input.len())));
        let mut units = 0;
        while units < n {
            let at = self.pos;
            let b0 = self.byte()?;
            let cont = |d: &mut Self| -> Result<u32> {
                let b = d.byte()?;
                if b & 0xc0 != 0x80 {
                    return Err(Error::Utf8(at));
                }
                Ok(u32::from(b & 0x3f))
            };
            let (cp, width) = if b0 < 0x80 {
                (u32::from(b0), 1)
            } else if b0 & 0xe0 == 0xc0 {
                ((u32::from(b0 & 0x1f) << 6) | cont(self)?, 1)
            } else if b0 & 0xf0 == 0xe0 {
                let c1 = cont(self)?;
                let c2 = cont(self)?;
                ((u32::from(b0 & 0x0f) << 12) | (c1 << 6) | c2, 1)
            } else if b0 & 0xf8 == 0xf0 {
                let c1 = cont(self)?;
                let c2 = cont(self)?;
                let c3 = cont(self)?;
                (
                    (u32::from(b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3,
                    2,
                )
            } else {
                return Err(Error::Utf8(at));
            };
            units += width;
            match cp {
                0xd800..=0xdbff => {
                    if pending.replace(cp as u16).is_some() {
                        out.push(char::REPLACEMENT_CHARACTER);
                    }
                }
                0xdc00..=0xdfff => match pending.take() {
                    Some(high) => {
                        let c = 0x10000 + ((u32::from(high) - 0xd800) << 10) + (cp - 0xdc00);
                        out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    None => out.push(char::REPLACEMENT_CHARACTER),
                },
                _ => {
                    if pending.take().is_some() {
                        out.push(char::REPLACEMENT_CHARACTER);
                    }
                    out.push(char::from_u32(cp).ok_or(Error::Utf8(at))?);
                }
            }
        }
        Ok(())
    }

    /// Reads a string value.
    pub fn read_string(&mut self) -> Result<String> {
        let tag = self.byte()?;
        let mut s = String::new();
        self.string_after(tag, &mut s)?;
        Ok(s)
    }

    /// Whether `tag` starts binary data.
    #[inline]
    pub(crate) fn is_binary_tag(tag: u8) -> bool {
        matches!(tag, 0x20..=0x2f | 0x34..=0x37 | b'A' | b'B')
    }

    /// Reads binary data after its first tag.
    pub(crate) fn binary_after(&mut self, mut tag: u8) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let (len, last) = match tag {
                0x20..=0x2f => ((tag - 0x20) as usize, true),
                0x34..=0x37 => ((((tag - 0x34) as usize) << 8) | self.byte()? as usize, true),
                b'B' => (self.u16()?, true),
                b'A' => (self.u16()?, false),
                _ => return Err(self.unexpected(tag, "a binary chunk")),
            };
            out.extend_from_slice(self.take(len)?);
            if last {
                return Ok(out);
            }
            tag = self.byte()?;
        }
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

/// `bytes`, which are ASCII, as text (without checking them again).
#[inline]
fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller checked that `bytes` is ASCII, and ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Decodes one value from `input`, which must hold exactly one value.
pub fn decode_value(input: &[u8]) -> Result<Value> {
    let mut d = Decoder::new(input);
    let v = d.read_value()?;
    if !d.is_at_end() {
        return Err(Error::Message(format!(
            "{} trailing bytes after the value",
            input.len() - d.pos
        )));
    }
    Ok(v)
}
