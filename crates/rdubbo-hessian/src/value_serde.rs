//! serde for [`Value`]: lossless through Hessian2, the JSON form through other formats.
//!
//! Into Hessian2 (a non-human-readable format) a value is handed to the encoder whole and
//! written exactly as it is; out of Hessian2 it is read whole. Human-readable formats
//! (JSON) see its JSON form: numbers, strings, `byte[]` as base64, dates as milliseconds,
//! `BigDecimal`/`BigInteger` as their text, enum constants as their name, objects as maps
//! with a `class` entry first, NaN and infinities as `"NaN"`/`"Infinity"`/`"-Infinity"`,
//! a shared value written again and a cycle closed with `null`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::value::{Map, Object, Value};

/// The newtype-struct name by which a [`Value`] tells the Hessian2 serializer and
/// deserializer to take it whole.
pub(crate) const VALUE_TOKEN: &str = "$rdubbo_hessian::Value";

thread_local! {
    /// The value being serialized whole (set by `Value::serialize`, taken by the encoder).
    pub(crate) static TO_ENCODE: RefCell<Option<Value>> = const { RefCell::new(None) };
    /// The value read whole (set by the decoder, taken by `Value::deserialize`).
    pub(crate) static DECODED: RefCell<Option<Value>> = const { RefCell::new(None) };
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let open = RefCell::new(Vec::new());
        let plain = Plain {
            v: self,
            roots: std::slice::from_ref(self),
            open: &open,
        };
        if s.is_human_readable() {
            plain.serialize(s)
        } else {
            TO_ENCODE.with(|p| *p.borrow_mut() = Some(self.clone()));
            s.serialize_newtype_struct(VALUE_TOKEN, &plain)
        }
    }
}

/// A value in its JSON form.
struct Plain<'a> {
    v: &'a Value,
    roots: &'a [Value],
    open: &'a RefCell<Vec<*const Value>>,
}

impl<'a> Plain<'a> {
    fn child(&self, v: &'a Value) -> Plain<'a> {
        Plain {
            v,
            roots: self.roots,
            open: self.open,
        }
    }
}

impl Serialize for Plain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.v {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i32(*i),
            Value::Long(l) => s.serialize_i64(*l),
            Value::Double(d) if d.is_finite() => s.serialize_f64(*d),
            Value::Double(d) if d.is_nan() => s.serialize_str("NaN"),
            Value::Double(d) if *d > 0.0 => s.serialize_str("Infinity"),
            Value::Double(_) => s.serialize_str("-Infinity"),
            Value::String(x) => s.serialize_str(x),
            Value::Binary(b) => s.serialize_str(&base64(b)),
            Value::Date(ms) => s.serialize_i64(*ms),
            Value::Ref(i) => match Value::resolve(self.roots, *i) {
                Some(t) if !self.open.borrow().contains(&(t as *const Value)) => {
                    self.child(t).serialize(s)
                }
                _ => s.serialize_unit(),
            },
            Value::List(l) => {
                self.open.borrow_mut().push(self.v);
                let mut seq = s.serialize_seq(Some(l.items.len()))?;
                for x in &l.items {
                    seq.serialize_element(&self.child(x))?;
                }
                self.open.borrow_mut().pop();
                seq.end()
            }
            Value::Map(m) => {
                self.open.borrow_mut().push(self.v);
                let mut map = s.serialize_map(Some(m.entries.len()))?;
                for (k, x) in &m.entries {
                    map.serialize_entry(&key_text(k), &self.child(x))?;
                }
                self.open.borrow_mut().pop();
                map.end()
            }
            Value::Object(o) => {
                if let Some(text) = decimal_text(o) {
                    return s.serialize_str(&text);
                }
                if let Some(name) = enum_name(o) {
                    return s.serialize_str(name);
                }
                self.open.borrow_mut().push(self.v);
                let mut map = s.serialize_map(Some(o.fields.len() + 1))?;
                map.serialize_entry("class", &o.class)?;
                for (k, x) in &o.fields {
                    map.serialize_entry(k, &self.child(x))?;
                }
                self.open.borrow_mut().pop();
                map.end()
            }
        }
    }
}

/// A map key as JSON text.
fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Long(l) => l.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Date(ms) => ms.to_string(),
        Value::Object(o) => decimal_text(o)
            .or_else(|| enum_name(o).map(str::to_string))
            .unwrap_or_else(|| format!("{k:?}")),
        other => format!("{other:?}"),
    }
}

/// The name of a Java enum constant (an object whose one field is `name`).
pub fn enum_name(o: &Object) -> Option<&str> {
    match o.fields.as_slice() {
        [(name, Value::String(s))] if name == "name" => Some(s),
        _ => None,
    }
}

/// The decimal text of a `java.math.BigDecimal` (field `value`) or `java.math.BigInteger`
/// (fields `signum` and `mag`, big-endian 32-bit words).
pub fn decimal_text(o: &Object) -> Option<String> {
    match o.class.as_str() {
        "java.math.BigDecimal" => o.field("value").and_then(Value::as_str).map(str::to_string),
        "java.math.BigInteger" => {
            let signum = o.field("signum")?.as_i64()?;
            let Value::List(mag) = o.field("mag")? else {
                return None;
            };
            let mut words: Vec<u32> = Vec::with_capacity(mag.items.len());
            for w in &mag.items {
                words.push(w.as_i64()? as u32);
            }
            let mut groups = Vec::new();
            while words.iter().any(|w| *w != 0) {
                let mut rem: u64 = 0;
                for w in words.iter_mut() {
                    let cur = (rem << 32) | u64::from(*w);
                    *w = (cur / 1_000_000_000) as u32;
                    rem = cur % 1_000_000_000;
                }
                groups.push(rem as u32);
            }
            let mut text = String::new();
            if signum < 0 {
                text.push('-');
            }
            match groups.split_last() {
                None => text.push('0'),
                Some((top, rest)) => {
                    text.push_str(&top.to_string());
                    for g in rest.iter().rev() {
                        text.push_str(&format!("{g:09}"));
                    }
                }
            }
            Some(text)
        }
        _ => None,
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (Jackson's form of `byte[]`).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` for other text.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_newtype_struct(VALUE_TOKEN, ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        // The Hessian2 decoder hands over the value it read whole, then calls this.
        Ok(DECODED
            .with(|p| p.borrow_mut().take())
            .unwrap_or(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(match i32::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Long(v),
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(match i32::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Long(v as i64),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Double(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Binary(v.to_vec()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some(x) = a.next_element::<Value>()? {
            items.push(x);
        }
        Ok(Value::list(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = a.next_entry::<Value, Value>()? {
            entries.push((k, v));
        }
        // A map with a `class` entry is the JSON form of an object.
        let class = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("class"))
            .and_then(|(_, v)| v.as_str().map(str::to_string));
        Ok(match class {
            Some(class) => Value::Object(Object {
                class,
                fields: entries
                    .into_iter()
                    .filter_map(|(k, v)| match k {
                        Value::String(k) if k != "class" => Some((k, v)),
                        _ => None,
                    })
                    .collect(),
            }),
            None => Value::Map(Map {
                type_name: None,
                entries,
            }),
        })
    }
}
