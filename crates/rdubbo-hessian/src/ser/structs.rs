//! serde structs: the schema (field names and class definition) learnt once per struct
//! type and cached per thread, and the serializer writing a struct's fields against it.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::ser::{self, Serialize};

use crate::encode::{same_name, Encoder, Fields};
use crate::error::{Error, Result};

/// What the serializer knows of a serde struct once it has seen one: its field names, and
/// its class definition as written when no rename applies (copied into each stream that
/// needs it).
#[derive(Debug)]
pub(super) struct Schema {
    pub(super) fields: Fields,
    pub(super) definition: &'static [u8],
}

/// Schemas of the structs serialized so far, by (serde name, field count), shared by every
/// thread: a struct's fields are learnt once per process. Schemas are never dropped (one
/// per struct type of the program).
static SCHEMAS: RwLock<BTreeMap<(&'static str, usize), &'static Schema>> =
    RwLock::new(BTreeMap::new());

/// Slots of a thread's schema cache.
const CACHE_SLOTS: usize = 64;

/// A schema found for (address of the serde name, its length, field count).
#[derive(Clone, Copy)]
struct Cached {
    name: usize,
    name_len: usize,
    len: usize,
    schema: &'static Schema,
}

thread_local! {
    /// This thread's view of [`SCHEMAS`]: a direct-mapped cache keyed by the address of the
    /// serde name (no lock, no hashing of the text; a miss reads [`SCHEMAS`]).
    static SCHEMA_CACHE: [Cell<Option<Cached>>; CACHE_SLOTS] =
        const { [const { Cell::new(None) }; CACHE_SLOTS] };
}

#[inline]
fn cache_slot(name: &'static str, len: usize) -> usize {
    let a = name.as_ptr() as usize;
    ((a >> 3) ^ (a >> 10) ^ len.wrapping_mul(7)) % CACHE_SLOTS
}

/// The schema of the serde struct `name` with `len` fields, if one was learnt.
#[inline]
fn schema(name: &'static str, len: usize) -> Option<&'static Schema> {
    let slot = cache_slot(name, len);
    let hit = SCHEMA_CACHE
        .with(|c| c[slot].get())
        .filter(|c| c.name == name.as_ptr() as usize && c.name_len == name.len() && c.len == len);
    match hit {
        Some(c) => Some(c.schema),
        None => shared_schema(name, len),
    }
}

fn shared_schema(name: &'static str, len: usize) -> Option<&'static Schema> {
    let found = SCHEMAS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(name, len))
        .copied()?;
    remember(name, len, found);
    Some(found)
}

fn remember(name: &'static str, len: usize, schema: &'static Schema) {
    let slot = cache_slot(name, len);
    SCHEMA_CACHE.with(|c| {
        c[slot].set(Some(Cached {
            name: name.as_ptr() as usize,
            name_len: name.len(),
            len,
            schema,
        }))
    });
}

/// Records the fields of the serde struct `name` with `len` fields.
fn learn(name: &'static str, len: usize, fields: Vec<&'static str>) -> &'static Schema {
    let mut all = SCHEMAS.write().unwrap_or_else(|e| e.into_inner());
    let schema = *all.entry((name, len)).or_insert_with(|| {
        let mut e = Encoder::new();
        e.define_class(name, fields.iter().copied());
        Box::leak(Box::new(Schema {
            fields: fields.leak(),
            definition: e.into_bytes().leak(),
        }))
    });
    drop(all);
    remember(name, len, schema);
    schema
}

/// The schema of the Java enum `name`: one field, `name`.
pub(super) fn enum_schema(name: &'static str) -> &'static Schema {
    schema(name, usize::MAX).unwrap_or_else(|| learn(name, usize::MAX, vec!["name"]))
}

/// Writes a struct: fields checked against the class definition already written.
pub struct StructSerializer<'a> {
    enc: &'a mut Encoder,
    mode: StructMode,
}

enum StructMode {
    /// The class definition is written; values follow in its field order.
    Known { fields: Fields, next: usize },
    /// First sight of this struct: values go to a side buffer while field names are learnt.
    Learning {
        name: &'static str,
        len: usize,
        outer: Vec<u8>,
        fields: Vec<&'static str>,
    },
}

impl<'a> StructSerializer<'a> {
    #[inline]
    pub(super) fn begin(
        enc: &'a mut Encoder,
        name: &'static str,
        len: usize,
    ) -> StructSerializer<'a> {
        if let Some(class) = enc.struct_class(name, len) {
            enc.write_instance(class.index);
            return StructSerializer {
                enc,
                mode: StructMode::Known {
                    fields: class.fields,
                    next: 0,
                },
            };
        }
        StructSerializer::define(enc, name, len)
    }

    /// The first instance of `name` in this stream: its class definition, then the instance.
    fn define(enc: &'a mut Encoder, name: &'static str, len: usize) -> StructSerializer<'a> {
        if let Some(schema) = schema(name, len) {
            let index = enc.define_struct(name, len, schema);
            enc.write_instance(index);
            return StructSerializer {
                enc,
                mode: StructMode::Known {
                    fields: schema.fields,
                    next: 0,
                },
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

    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        match &mut self.mode {
            StructMode::Known { fields, next } => {
                if fields.get(*next).is_some_and(|f| same_name(f, key)) {
                    *next += 1;
                    return value.serialize(&mut *self.enc);
                }
                while *next < fields.len() && !same_name(fields[*next], key) {
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

    #[inline]
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
                let schema = learn(name, len, fields);
                let index = self.enc.define_struct(name, len, schema);
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
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    #[inline]
    fn skip_field(&mut self, _key: &'static str) -> Result<()> {
        Ok(())
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.finish()
    }
}
