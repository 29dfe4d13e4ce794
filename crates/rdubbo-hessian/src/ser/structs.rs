//! serde structs: the schema (field names and class definition) learnt once per struct
//! type and cached per thread, and the serializer writing a struct's fields against it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
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

/// Slots of a thread's schema cache (a power of two).
const CACHE_SLOTS: usize = 64;

/// How many slots from its home slot a schema may land in; past them it goes to the
/// thread's overflow map. Nothing is ever evicted, so two names that hash alike share the
/// table instead of pushing each other out.
const PROBES: usize = 8;

/// What a cached schema is found by: the address and length of the serde name (the
/// literal a serde impl hands over each time; the same text at another address is another
/// key of the same schema) and the field count.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    name: usize,
    name_len: usize,
    len: usize,
}

impl Key {
    #[inline]
    fn of(name: &'static str, len: usize) -> Key {
        Key {
            name: name.as_ptr() as usize,
            name_len: name.len(),
            len,
        }
    }

    /// The slot the key is looked for first: the bits of the address and the field count,
    /// mixed by a multiplication (Fibonacci hashing), so that neighbouring literals spread.
    #[inline]
    fn home(self) -> usize {
        let mixed = (self.name as u64 ^ (self.len as u64).rotate_left(29))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - CACHE_SLOTS.trailing_zeros())) as usize
    }
}

/// A schema found for a [`Key`].
#[derive(Clone, Copy)]
struct Cached {
    key: Key,
    schema: &'static Schema,
}

thread_local! {
    /// This thread's view of [`SCHEMAS`]: an open-addressed table by [`Key`] (no lock, no
    /// hashing of the text; a key not in it reads [`OVERFLOW`], then [`SCHEMAS`]).
    static SCHEMA_CACHE: [Cell<Option<Cached>>; CACHE_SLOTS] =
        const { [const { Cell::new(None) }; CACHE_SLOTS] };
    /// The schemas of this thread that found no free slot within [`PROBES`] of their home.
    static OVERFLOW: RefCell<HashMap<Key, &'static Schema>> = RefCell::new(HashMap::new());
}

/// Where a key stands in this thread's table.
enum Slot {
    Found(&'static Schema),
    /// Not in the table; this slot, the first free one of its probe, would take it.
    Free(usize),
    /// Not within [`PROBES`] slots of its home: in [`OVERFLOW`], if anywhere on this thread.
    Full,
}

fn probe(key: Key) -> Slot {
    let home = key.home();
    SCHEMA_CACHE.with(|c| {
        for i in 0..PROBES {
            let slot = (home + i) % CACHE_SLOTS;
            match c[slot].get() {
                Some(hit) if hit.key == key => return Slot::Found(hit.schema),
                Some(_) => {}
                // Slots are only ever filled: the key is in none past a free one.
                None => return Slot::Free(slot),
            }
        }
        Slot::Full
    })
}

/// The schema of the serde struct `name` with `len` fields, if one was learnt.
#[inline]
fn schema(name: &'static str, len: usize) -> Option<&'static Schema> {
    let key = Key::of(name, len);
    // Most keys sit in their home slot: one look, as a direct-mapped table.
    match SCHEMA_CACHE.with(|c| c[key.home()].get()) {
        Some(hit) if hit.key == key => Some(hit.schema),
        _ => schema_elsewhere(name, len, key),
    }
}

/// [`schema`] past the home slot: the other slots of the probe, the overflow, the shared
/// map.
#[cold]
#[inline(never)]
fn schema_elsewhere(name: &'static str, len: usize, key: Key) -> Option<&'static Schema> {
    match probe(key) {
        Slot::Found(schema) => Some(schema),
        Slot::Free(_) => shared_schema(name, len, key),
        Slot::Full => OVERFLOW
            .with(|o| o.borrow().get(&key).copied())
            .or_else(|| shared_schema(name, len, key)),
    }
}

fn shared_schema(name: &'static str, len: usize, key: Key) -> Option<&'static Schema> {
    #[cfg(test)]
    tests::SHARED_READS.with(|n| n.set(n.get() + 1));
    let found = SCHEMAS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(name, len))
        .copied()?;
    remember(key, found);
    Some(found)
}

fn remember(key: Key, schema: &'static Schema) {
    match probe(key) {
        Slot::Found(_) => {}
        Slot::Free(slot) => SCHEMA_CACHE.with(|c| c[slot].set(Some(Cached { key, schema }))),
        Slot::Full => OVERFLOW.with(|o| {
            o.borrow_mut().insert(key, schema);
        }),
    }
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
    remember(Key::of(name, len), schema);
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde::Serialize;

    thread_local! {
        /// How often this thread read the shared map.
        pub(super) static SHARED_READS: Cell<usize> = const { Cell::new(0) };
    }

    macro_rules! structs {
        ($($name:ident)*) => {
            $(
                #[derive(Serialize)]
                struct $name {
                    id: i32,
                }
            )*
            /// Each struct encoded once, as a stream of its own.
            fn encode_all() {
                $(
                    crate::to_bytes(&$name { id: 1 }).unwrap();
                )*
            }
        };
    }

    structs! {
        S00 S01 S02 S03 S04 S05 S06 S07 S08 S09 S10 S11 S12 S13 S14 S15 S16 S17 S18 S19
        S20 S21 S22 S23 S24 S25 S26 S27 S28 S29 S30 S31 S32 S33 S34 S35 S36 S37 S38 S39
        S40 S41 S42 S43 S44 S45 S46 S47 S48 S49 S50 S51 S52 S53 S54 S55 S56 S57 S58 S59
        S60 S61 S62 S63 S64 S65 S66 S67 S68 S69 S70 S71 S72 S73 S74 S75 S76 S77 S78 S79
        S80 S81 S82 S83 S84 S85 S86 S87 S88 S89 S90 S91 S92 S93 S94 S95 S96 S97 S98 S99
    }

    /// However their names are laid out, and more structs than the table has slots: once a
    /// thread has met them, their schemas are its own, none read from the shared map again.
    #[test]
    fn a_thread_keeps_every_schema_it_met() {
        std::thread::spawn(|| {
            encode_all();
            let after_first = SHARED_READS.with(Cell::get);
            for _ in 0..3 {
                encode_all();
            }
            assert_eq!(SHARED_READS.with(Cell::get), after_first);
        })
        .join()
        .unwrap();
        // A thread that meets them later reads each schema from the shared map once.
        std::thread::spawn(|| {
            encode_all();
            encode_all();
            assert_eq!(SHARED_READS.with(Cell::get), 100);
        })
        .join()
        .unwrap();
    }
}
