//! The Hessian 2.0 reader.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::value::Value;

mod text;
mod value;

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
