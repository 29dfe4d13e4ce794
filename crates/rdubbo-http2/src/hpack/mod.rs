//! HPACK (RFC 7541): header compression for HTTP/2, with the static Huffman code.

pub mod huffman;
mod table;

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::Headers;
pub use table::entry_size;
use table::{Dynamic, STATIC};

/// Why a header block could not be decoded: a connection error (COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The block ends inside a field.
    #[error("header block truncated")]
    Truncated,
    /// An integer longer than HPACK allows here.
    #[error("integer overflow in header block")]
    Overflow,
    /// An index beyond both tables.
    #[error("header index {0} out of range")]
    BadIndex(usize),
    /// A bad Huffman string.
    #[error("bad Huffman string")]
    Huffman,
    /// A dynamic table size update above the limit, or not at the start of the block.
    #[error("bad dynamic table size update")]
    SizeUpdate,
}

/// Largest integer accepted (far above any legitimate index or length).
const MAX_INT: usize = 1 << 24;

fn decode_int(buf: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, HpackError> {
    let mask = (1u16 << prefix) as usize - 1;
    let first = *buf.get(*pos).ok_or(HpackError::Truncated)? as usize & mask;
    *pos += 1;
    if first < mask {
        return Ok(first);
    }
    let mut value = mask;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += ((b & 0x7f) as usize) << shift;
        if value > MAX_INT {
            return Err(HpackError::Overflow);
        }
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::Overflow);
        }
    }
}

fn encode_int(dst: &mut Vec<u8>, flags: u8, prefix: u8, mut value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | mask as u8);
    value -= mask;
    while value >= 128 {
        dst.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    dst.push(value as u8);
}

/// Decodes header blocks of one connection (one dynamic table).
#[derive(Debug)]
pub struct Decoder {
    table: Dynamic,
    /// The limit we advertised (SETTINGS_HEADER_TABLE_SIZE); updates may not exceed it.
    limit: usize,
}

impl Decoder {
    /// A decoder whose peer may use a dynamic table of up to `limit` bytes.
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: Dynamic::new(limit),
            limit,
        }
    }

    fn string(block: &Bytes, pos: &mut usize) -> Result<Bytes, HpackError> {
        let huffman = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = decode_int(block, pos, 7)?;
        let end = pos.checked_add(len).ok_or(HpackError::Overflow)?;
        if end > block.len() {
            return Err(HpackError::Truncated);
        }
        let raw = block.slice(*pos..end);
        *pos = end;
        if !huffman {
            return Ok(raw);
        }
        let mut out = Vec::with_capacity(len + len / 2);
        huffman::decode(&raw, &mut out).map_err(|_| HpackError::Huffman)?;
        Ok(Bytes::from(out))
    }

    fn indexed(&self, index: usize) -> Result<(Bytes, Bytes), HpackError> {
        if index == 0 {
            return Err(HpackError::BadIndex(0));
        }
        if index <= STATIC.len() {
            let (n, v) = STATIC[index - 1];
            return Ok((
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            ));
        }
        self.table
            .get(index - STATIC.len() - 1)
            .cloned()
            .ok_or(HpackError::BadIndex(index))
    }

    /// Decodes one complete header block into `out`. Fields past `max_list` bytes (as
    /// SETTINGS_MAX_HEADER_LIST_SIZE counts) are decoded (the table must stay in step) but
    /// not kept; `Ok(false)` then says the list was too large.
    pub fn decode(
        &mut self,
        block: &Bytes,
        max_list: usize,
        out: &mut Headers,
    ) -> Result<bool, HpackError> {
        let mut pos = 0;
        let mut size = 0usize;
        let mut fits = true;
        let mut fields = 0usize;
        while pos < block.len() {
            let b = block[pos];
            let (name, value) = if b & 0x80 != 0 {
                let index = decode_int(block, &mut pos, 7)?;
                self.indexed(index)?
            } else if b & 0xc0 == 0x40 {
                let index = decode_int(block, &mut pos, 6)?;
                let name = if index == 0 {
                    Self::string(block, &mut pos)?
                } else {
                    self.indexed(index)?.0
                };
                let value = Self::string(block, &mut pos)?;
                self.table.insert(name.clone(), value.clone());
                (name, value)
            } else if b & 0xe0 == 0x20 {
                if fields > 0 {
                    return Err(HpackError::SizeUpdate);
                }
                let new = decode_int(block, &mut pos, 5)?;
                if new > self.limit {
                    return Err(HpackError::SizeUpdate);
                }
                self.table.set_max(new);
                continue;
            } else {
                // Literal without indexing (0000) or never indexed (0001).
                let index = decode_int(block, &mut pos, 4)?;
                let name = if index == 0 {
                    Self::string(block, &mut pos)?
                } else {
                    self.indexed(index)?.0
                };
                let value = Self::string(block, &mut pos)?;
                (name, value)
            };
            fields += 1;
            size += entry_size(&name, &value);
            if size > max_list {
                fits = false;
            }
            if fits {
                out.push(name, value);
            }
        }
        Ok(fits)
    }
}

/// Names whose values are never put in the dynamic table (secrets, or values that change
/// on every request and would only churn the table).
fn never_index(name: &[u8]) -> bool {
    matches!(
        name,
        b"authorization" | b"cookie" | b"set-cookie" | b"proxy-authorization"
    )
}

/// Fields sent without adding them to the dynamic table: large values, and values that
/// change from request to request once their name can be referred to (`name_indexed`:
/// in the static table, or put in the dynamic one by its first use — so a `grpc-timeout`
/// costs one byte when it repeats and its name's index plus the value when it changes,
/// instead of the name spelled out every time).
fn not_indexed(name: &[u8], value: &[u8], name_indexed: bool) -> bool {
    value.len() > 512 || (name_indexed && matches!(name, b"grpc-timeout" | b"content-length"))
}

/// FNV-1a: the static table's index is fixed (a lookup cannot be made slow by the
/// names looked up), so SipHash's protection is not needed and its cost is not paid.
type StaticIndex = HashMap<&'static [u8], (usize, usize), fnv::FnvBuildHasher>;

fn static_index() -> &'static StaticIndex {
    static MAP: OnceLock<StaticIndex> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut m = StaticIndex::default();
        for (i, (n, _)) in STATIC.iter().enumerate() {
            m.entry(n.as_bytes())
                .and_modify(|e| e.1 = i + 1)
                .or_insert((i + 1, i + 1));
        }
        m
    })
}

/// Encodes header blocks of one connection (one dynamic table).
#[derive(Debug)]
pub struct Encoder {
    table: Dynamic,
    /// Smallest and last table sizes set since the last block, to announce (section 4.2).
    update: Option<(usize, usize)>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// An encoder with the default 4,096-byte table.
    pub fn new() -> Encoder {
        Encoder {
            table: Dynamic::new(4096),
            update: None,
        }
    }

    /// Applies the peer's SETTINGS_HEADER_TABLE_SIZE (this encoder uses at most 4,096).
    pub fn set_max_table_size(&mut self, size: usize) {
        let size = size.min(4096);
        if size == self.table.max() && self.update.is_none() {
            return;
        }
        let low = self.update.map_or(size, |(low, _)| low.min(size));
        self.update = Some((low, size));
        self.table.set_max(size);
    }

    fn string(dst: &mut Vec<u8>, s: &[u8]) {
        let h = huffman::encoded_len(s);
        if h < s.len() {
            encode_int(dst, 0x80, 7, h);
            huffman::encode(s, dst);
        } else {
            encode_int(dst, 0, 7, s.len());
            dst.extend_from_slice(s);
        }
    }

    /// Appends the block of `headers` to `dst`.
    pub fn encode(&mut self, headers: &Headers, dst: &mut Vec<u8>) {
        if let Some((low, last)) = self.update.take() {
            if low != last {
                encode_int(dst, 0x20, 5, low);
            }
            encode_int(dst, 0x20, 5, last);
        }
        for (name, value) in headers.iter() {
            self.field(name, value, dst);
        }
    }

    fn field(&mut self, name: &Bytes, value: &Bytes, dst: &mut Vec<u8>) {
        let mut name_index = 0;
        if let Some(&(first, last)) = static_index().get(name.as_ref()) {
            name_index = first;
            for i in first..=last {
                if STATIC[i - 1].1.as_bytes() == value.as_ref() {
                    encode_int(dst, 0x80, 7, i);
                    return;
                }
            }
        }
        for (i, (n, v)) in self.table.iter().enumerate() {
            if n == name {
                if v == value {
                    encode_int(dst, 0x80, 7, STATIC.len() + 1 + i);
                    return;
                }
                if name_index == 0 {
                    name_index = STATIC.len() + 1 + i;
                }
            }
        }
        let (flags, prefix) = if never_index(name) {
            (0x10, 4)
        } else if not_indexed(name, value, name_index != 0) {
            (0x00, 4)
        } else {
            (0x40, 6)
        };
        encode_int(dst, flags, prefix, name_index);
        if name_index == 0 {
            Self::string(dst, name);
        }
        Self::string(dst, value);
        if flags == 0x40 {
            self.table.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
