//! A header list: (name, value) pairs in wire order, pseudo-headers first.

use bytes::Bytes;

/// A header list as HPACK carries it: names are lower-case bytes, values are bytes, order
/// is kept and names may repeat. Pseudo-headers (`:method`, `:path`, `:status`, …) are
/// fields like the others and must come first.
///
/// Fields decoded from the wire share the received buffer or the static table where they
/// can, so cloning a name or value never copies it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(Bytes, Bytes)>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// An empty list with room for `n` fields.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            fields: Vec::with_capacity(n),
        }
    }

    /// Appends a field. The name must be lower case (HTTP/2 refuses upper-case names).
    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Appends a field of static strings (no allocation).
    pub fn push_static(&mut self, name: &'static str, value: &'static str) {
        self.fields.push((
            Bytes::from_static(name.as_bytes()),
            Bytes::from_static(value.as_bytes()),
        ));
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The value of the first field named `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.fields.iter().map(|(n, v)| (n, v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Removes every field, keeping the capacity.
    pub fn clear(&mut self) {
        self.fields.clear();
    }

    /// The size of the list as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 6.5.2).
    pub fn list_size(&self) -> usize {
        self.fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 32)
            .sum()
    }
}

impl FromIterator<(Bytes, Bytes)> for Headers {
    fn from_iter<I: IntoIterator<Item = (Bytes, Bytes)>>(iter: I) -> Headers {
        Headers {
            fields: iter.into_iter().collect(),
        }
    }
}
