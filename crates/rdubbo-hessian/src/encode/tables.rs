//! What a stream remembers besides its bytes: the class definitions written for serde
//! structs and enums, the enum constants written (for back-references), and snapshots of
//! these tables to roll back to.

use std::collections::HashMap;

use super::Encoder;

/// Field names of a serde struct, in order (learnt once per process, then kept).
pub(crate) type Fields = &'static [&'static str];

/// Whether two names a serde impl handed over are the same: the same literal (pointer and
/// length, the usual case) or the same text.
#[inline]
pub(crate) fn same_name(a: &'static str, b: &'static str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// A list kept inline up to `N` items (no allocation for the few a stream usually has).
#[derive(Debug, Clone)]
pub(crate) struct SmallList<T: Copy, const N: usize> {
    inline: [Option<T>; N],
    len: usize,
    more: Vec<T>,
}

impl<T: Copy, const N: usize> Default for SmallList<T, N> {
    fn default() -> Self {
        SmallList {
            inline: [None; N],
            len: 0,
            more: Vec::new(),
        }
    }
}

impl<T: Copy, const N: usize> SmallList<T, N> {
    #[inline]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.inline[..self.len.min(N)]
            .iter()
            .flatten()
            .chain(self.more.iter())
    }

    #[inline]
    pub(crate) fn push(&mut self, item: T) {
        if self.len < N {
            self.inline[self.len] = Some(item);
        } else {
            self.more.push(item);
        }
        self.len += 1;
    }

    pub(crate) fn retain(&mut self, keep: impl Fn(&T) -> bool) {
        let kept: Vec<T> = self.iter().copied().filter(|x| keep(x)).collect();
        self.clear();
        for x in kept {
            self.push(x);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.inline = [None; N];
        self.len = 0;
        self.more.clear();
    }
}

/// A class definition written for a serde struct (or enum, with `len == usize::MAX`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StructClass {
    pub(crate) name: &'static str,
    pub(crate) len: usize,
    pub(crate) index: usize,
    pub(crate) fields: Fields,
}

/// An enum constant written in the stream, and its reference number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnumRef {
    name: &'static str,
    variant: &'static str,
    reference: u32,
}

/// Where a stream's tables stood, to roll back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    classes: usize,
    types: usize,
    refs: u32,
}

impl Encoder {
    #[inline]
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            classes: self.class_count,
            types: self.types.as_ref().map_or(0, HashMap::len),
            refs: self.refs,
        }
    }

    pub(crate) fn restore(&mut self, s: Snapshot) {
        if let Some(v) = &mut self.value_classes {
            v.retain(|_, i| *i < s.classes);
        }
        self.struct_classes.retain(|c| c.index < s.classes);
        self.class_count = s.classes;
        if let Some(t) = &mut self.types {
            t.retain(|_, i| *i < s.types);
        }
        self.enum_refs.retain(|e| e.reference < s.refs);
        self.refs = s.refs;
    }

    /// The class definition written for the serde struct `name` of `len` fields, if any.
    #[inline]
    pub(crate) fn struct_class(&self, name: &'static str, len: usize) -> Option<StructClass> {
        self.struct_classes
            .iter()
            .find(|c| c.len == len && same_name(c.name, name))
            .copied()
    }

    #[inline]
    pub(crate) fn remember_struct(
        &mut self,
        name: &'static str,
        len: usize,
        index: usize,
        fields: Fields,
    ) {
        self.struct_classes.push(StructClass {
            name,
            len,
            index,
            fields,
        });
    }

    /// The reference number of the enum constant `name::variant` written before, if any.
    #[inline]
    pub(crate) fn enum_ref(&self, name: &'static str, variant: &'static str) -> Option<u32> {
        self.enum_refs
            .iter()
            .find(|e| same_name(e.variant, variant) && same_name(e.name, name))
            .map(|e| e.reference)
    }

    #[inline]
    pub(crate) fn remember_enum(&mut self, name: &'static str, variant: &'static str, r: u32) {
        self.enum_refs.push(EnumRef {
            name,
            variant,
            reference: r,
        });
    }
}
