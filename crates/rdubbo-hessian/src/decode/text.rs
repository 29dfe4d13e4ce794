//! Strings and binary data: chunked UTF-16-counted strings (borrowed when they are one
//! chunk of ASCII), byte arrays, and stepping over both.

use std::borrow::Cow;

use crate::error::{Error, Result};

use super::Decoder;

impl<'de> Decoder<'de> {
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
}

/// `bytes`, which are ASCII, as text (without checking them again).
#[inline]
#[allow(unsafe_code)] // the one unsafe block of the codec: skips a second UTF-8 check
fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller checked that `bytes` is ASCII, and ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}
