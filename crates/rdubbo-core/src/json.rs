//! The JSON form of Java values: how a [`Value`] is written as JSON (JSON-RPC, the CLI,
//! QoS) and read back.
//!
//! | Java | [`Value`] | JSON written | JSON read (no descriptor) |
//! |---|---|---|---|
//! | `null` | `Null` | `null` | `null` |
//! | `boolean` | `Bool` | `true` | `true` |
//! | `int`, `short`, `byte` | `Int` | `42` | an integer in `i32` range |
//! | `long` | `Long` | `42` | an integer outside `i32` range |
//! | `double`, `float` | `Double` | `1.5`; NaN, ±∞ as `"NaN"`, `"Infinity"`, `"-Infinity"` (as Jackson) | a number with a fraction or exponent |
//! | `String`, `char` | `String` | `"x"` | `"x"` |
//! | `byte[]` | `Binary` | base64 text (as Jackson) | — (descriptor `[B` reads base64 text or an array of ints) |
//! | `java.util.Date` | `Date` | milliseconds since the epoch (as Jackson) | — (descriptor `Ljava/util/Date;`) |
//! | `BigDecimal`, `BigInteger` | `Object` `{value}` / `{signum, mag}` | the decimal text | — (descriptor `Ljava/math/BigDecimal;`) |
//! | enum constant | `Object` `{name}` | the constant's name | — (an object with `"class"` and `"name"`) |
//! | `List`, `Set`, arrays | `List` (Java type kept) | an array | `List`, untyped (`ArrayList`) |
//! | `Map` | `Map` (Java type kept) | an object; keys written as text | `Map` with string keys |
//! | POJO | `Object` | an object: `"class"`, then the fields in order | an object with a `"class"` key |
//! | `Throwable` | `Object` | its fields (`detailMessage`, `cause`, …) and `"class"` | as any object |
//! | a shared value / cycle | `Ref` | the value again / `null` where it closes a cycle | — |
//!
//! With a JVM descriptor (`J`, `Ljava/lang/Long;`, `Ljava/util/Date;`, `[B`,
//! `Ljava/math/BigDecimal;`, `[I` …), [`to_value_as`] reads JSON into the Java type the
//! descriptor names, so the CLI and JSON callers can send exact Java types.

use serde_json::{Map as JMap, Number, Value as Json};

use crate::value::{List, Map, Object, Value};

/// Writes a value as JSON (see the module's table): the human-readable form of
/// [`Value`]'s `Serialize`.
pub fn from_value(v: &Value) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

pub use rdubbo_hessian::decimal_text;

/// A `java.math.BigInteger` object for decimal `text` (`None` if it is not an integer).
pub fn big_integer(text: &str) -> Option<Value> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Big-endian 32-bit words, built by multiply-and-add.
    let mut words: Vec<u32> = Vec::new();
    for b in digits.bytes() {
        let mut carry = u64::from(b - b'0');
        for w in words.iter_mut().rev() {
            let cur = u64::from(*w) * 10 + carry;
            *w = cur as u32;
            carry = cur >> 32;
        }
        if carry > 0 {
            words.insert(0, carry as u32);
        }
    }
    while words.first() == Some(&0) {
        words.remove(0);
    }
    let signum = if words.is_empty() {
        0
    } else if negative {
        -1
    } else {
        1
    };
    Some(Value::object(
        "java.math.BigInteger",
        vec![
            ("signum", Value::Int(signum)),
            (
                "mag",
                Value::List(List {
                    type_name: Some("[int".into()),
                    items: words.into_iter().map(|w| Value::Int(w as i32)).collect(),
                }),
            ),
            ("bitLength", Value::Int(-1)),
            ("bitCount", Value::Int(-1)),
            ("lowestSetBit", Value::Int(-2)),
            ("firstNonzeroByteNum", Value::Int(-2)),
        ],
    ))
}

/// Reads JSON as a value (see the module's table): integers become `Int` when they fit
/// 32 bits, else `Long`; objects with a `"class"` key become objects of that class.
pub fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => number(n),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::list(items.iter().map(to_value).collect()),
        Json::Object(o) => match o.get("class").and_then(Json::as_str) {
            Some(class) => object(class, o, |_, v| to_value(v)),
            None => Value::Map(Map {
                type_name: None,
                entries: o
                    .iter()
                    .map(|(k, v)| (Value::String(k.clone()), to_value(v)))
                    .collect(),
            }),
        },
    }
}

fn number(n: &Number) -> Value {
    match n.as_i64() {
        Some(i) => match i32::try_from(i) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Long(i),
        },
        None => match n.as_u64() {
            Some(u) => Value::Long(u as i64),
            None => Value::Double(n.as_f64().unwrap_or_default()),
        },
    }
}

fn object(class: &str, o: &JMap<String, Json>, f: impl Fn(&str, &Json) -> Value) -> Value {
    if class == "java.math.BigDecimal" {
        if let Some(v) = o.get("value") {
            return decimal(v);
        }
    }
    Value::Object(Object {
        class: class.to_string(),
        fields: o
            .iter()
            .filter(|(k, _)| *k != "class")
            .map(|(k, v)| (k.clone(), f(k, v)))
            .collect(),
    })
}

fn decimal(j: &Json) -> Value {
    let text = match j {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    Value::object("java.math.BigDecimal", vec![("value", Value::String(text))])
}

/// Reads JSON as the Java type of a JVM descriptor (`I`, `J`, `D`, `Z`, `Ljava/lang/Long;`,
/// `Ljava/util/Date;`, `[B`, `Ljava/math/BigDecimal;`, `Ljava/math/BigInteger;`, arrays
/// `[I`/`[Ljava/lang/String;` …); other descriptors read as [`to_value`] does.
pub fn to_value_as(j: &Json, descriptor: &str) -> Value {
    let int = || {
        j.as_i64()
            .or_else(|| j.as_str().and_then(|s| s.parse().ok()))
    };
    match (descriptor, j) {
        (_, Json::Null) => Value::Null,
        ("J" | "Ljava/lang/Long;", _) if int().is_some() => Value::Long(int().unwrap_or_default()),
        ("I" | "S" | "B" | "Ljava/lang/Integer;" | "Ljava/lang/Short;" | "Ljava/lang/Byte;", _)
            if int().is_some() =>
        {
            Value::Int(int().unwrap_or_default() as i32)
        }
        ("D" | "F" | "Ljava/lang/Double;" | "Ljava/lang/Float;", Json::Number(n)) => {
            Value::Double(n.as_f64().unwrap_or_default())
        }
        ("D" | "F" | "Ljava/lang/Double;" | "Ljava/lang/Float;", Json::String(s)) => {
            match s.as_str() {
                "NaN" => Value::Double(f64::NAN),
                "Infinity" => Value::Double(f64::INFINITY),
                "-Infinity" => Value::Double(f64::NEG_INFINITY),
                other => other
                    .parse()
                    .map_or_else(|_| Value::String(s.clone()), Value::Double),
            }
        }
        ("Z" | "Ljava/lang/Boolean;", Json::Bool(b)) => Value::Bool(*b),
        ("Ljava/util/Date;", Json::Number(n)) => Value::Date(n.as_i64().unwrap_or_default()),
        ("[B", Json::Array(items)) => Value::Binary(
            items
                .iter()
                .map(|x| x.as_i64().unwrap_or_default() as u8)
                .collect(),
        ),
        ("[B", Json::String(s)) => {
            Value::Binary(unbase64(s).unwrap_or_else(|| s.as_bytes().to_vec()))
        }
        ("Ljava/math/BigDecimal;", Json::Number(_) | Json::String(_)) => decimal(j),
        ("Ljava/math/BigInteger;", Json::Number(_) | Json::String(_)) => {
            let text = match j {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            big_integer(&text).unwrap_or(Value::String(text))
        }
        (d, Json::Array(items)) if d.starts_with('[') => {
            let item = &d[1..];
            Value::List(List {
                type_name: array_type_name(d),
                items: items.iter().map(|x| to_value_as(x, item)).collect(),
            })
        }
        (
            "Ljava/util/Set;"
            | "Ljava/util/HashSet;"
            | "Ljava/util/LinkedHashSet;"
            | "Ljava/util/TreeSet;",
            Json::Array(items),
        ) => Value::List(List {
            type_name: Some(match descriptor {
                "Ljava/util/Set;" => "java.util.HashSet".to_string(),
                d => class_of(d),
            }),
            items: items.iter().map(to_value).collect(),
        }),
        (d, Json::Object(o)) if d.starts_with('L') && !is_plain(d) && !o.contains_key("class") => {
            object(&class_of(d), o, |_, v| to_value(v))
        }
        _ => to_value(j),
    }
}

/// Interfaces and `Object`: a JSON object for them stays a map.
fn is_plain(d: &str) -> bool {
    matches!(
        d,
        "Ljava/lang/Object;"
            | "Ljava/util/Map;"
            | "Ljava/util/HashMap;"
            | "Ljava/util/List;"
            | "Ljava/util/Collection;"
    )
}

/// `Ljava/util/Date;` → `java.util.Date`.
fn class_of(d: &str) -> String {
    d.trim_start_matches('L')
        .trim_end_matches(';')
        .replace('/', ".")
}

/// The Hessian type name of an array descriptor, as Java's serializer writes it
/// (`[I` → `[int`, `[Ljava/lang/String;` → `[string`, `[Lcom/x/User;` → `[com.x.User`).
pub fn array_type_name(desc: &str) -> Option<String> {
    let inner = desc.strip_prefix('[')?;
    Some(match inner {
        "Z" => "[boolean".into(),
        "B" => "[byte".into(),
        "S" => "[short".into(),
        "I" => "[int".into(),
        "J" => "[long".into(),
        "F" => "[float".into(),
        "D" => "[double".into(),
        "C" => "[char".into(),
        "Ljava/lang/String;" => "[string".into(),
        "Ljava/lang/Object;" => "[object".into(),
        d if d.starts_with('[') => format!("[{}", array_type_name(d)?),
        d => format!("[{}", class_of(d)),
    })
}

/// The JVM descriptor a value is sent as when the caller names none: what Java's
/// `ReflectUtils.getDesc` gives for the value's own class.
pub fn descriptor_of(v: &Value) -> String {
    match v {
        Value::Null | Value::Ref(_) => "Ljava/lang/Object;".into(),
        Value::Bool(_) => "Z".into(),
        Value::Int(_) => "I".into(),
        Value::Long(_) => "J".into(),
        Value::Double(_) => "D".into(),
        Value::String(_) => "Ljava/lang/String;".into(),
        Value::Binary(_) => "[B".into(),
        Value::Date(_) => "Ljava/util/Date;".into(),
        Value::List(l) => match l.type_name.as_deref() {
            Some(t) if t.starts_with('[') => array_descriptor(t),
            Some(t) if t.contains("Set") => "Ljava/util/Set;".into(),
            _ => "Ljava/util/List;".into(),
        },
        Value::Map(_) => "Ljava/util/Map;".into(),
        Value::Object(o) => format!("L{};", o.class.replace('.', "/")),
    }
}

/// `[int` → `[I`, `[string` → `[Ljava/lang/String;`, `[com.x.User` → `[Lcom/x/User;`.
fn array_descriptor(type_name: &str) -> String {
    let inner = &type_name[1..];
    let d = match inner {
        "boolean" => "Z".into(),
        "byte" => "B".into(),
        "short" => "S".into(),
        "int" => "I".into(),
        "long" => "J".into(),
        "float" => "F".into(),
        "double" => "D".into(),
        "char" => "C".into(),
        "string" => "Ljava/lang/String;".into(),
        "object" => "Ljava/lang/Object;".into(),
        t if t.starts_with('[') => array_descriptor(t),
        t => format!("L{};", t.replace('.', "/")),
    };
    format!("[{d}")
}

/// The Java name of a descriptor, as `Class.getName()` spells it and `$invoke` takes it
/// (`J` → `long`, `Ljava/lang/Long;` → `java.lang.Long`, `[I` → `[I`,
/// `[Ljava/lang/String;` → `[Ljava.lang.String;`).
pub fn java_name(descriptor: &str) -> String {
    match descriptor {
        "Z" => "boolean".into(),
        "B" => "byte".into(),
        "S" => "short".into(),
        "I" => "int".into(),
        "J" => "long".into(),
        "F" => "float".into(),
        "D" => "double".into(),
        "C" => "char".into(),
        d if d.starts_with('[') => d.replace('/', "."),
        d => class_of(d),
    }
}

/// A Java type name or descriptor (`long`, `java.lang.Long`, `int[]`, `J`,
/// `Ljava/lang/Long;`) as a JVM descriptor.
pub fn descriptor_from_name(name: &str) -> String {
    let name = name.trim();
    if let Some(inner) = name.strip_suffix("[]") {
        return format!("[{}", descriptor_from_name(inner));
    }
    match name {
        "boolean" => "Z".into(),
        "byte" => "B".into(),
        "short" => "S".into(),
        "int" => "I".into(),
        "long" => "J".into(),
        "float" => "F".into(),
        "double" => "D".into(),
        "char" => "C".into(),
        "void" => "V".into(),
        d if d.len() == 1 || d.starts_with('[') || (d.starts_with('L') && d.ends_with(';')) => {
            d.to_string()
        }
        class => format!("L{};", class.replace('.', "/")),
    }
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    rdubbo_hessian::unbase64(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_round_trip() {
        for n in 0..10 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            assert_eq!(unbase64(&rdubbo_hessian::base64(&data)).unwrap(), data);
        }
        assert_eq!(rdubbo_hessian::base64(b"Man"), "TWFu");
        assert_eq!(rdubbo_hessian::base64(b"Ma"), "TWE=");
    }

    #[test]
    fn big_integers_round_trip_through_their_fields() {
        for t in [
            "0",
            "1",
            "-1",
            "4294967296",
            "123456789012345678901234567890",
            "-99",
        ] {
            let Value::Object(o) = big_integer(t).unwrap() else {
                panic!()
            };
            assert_eq!(decimal_text(&o).unwrap(), t);
        }
    }

    #[test]
    fn descriptors_read_exact_java_types() {
        assert_eq!(to_value_as(&json!(5), "J"), Value::Long(5));
        assert_eq!(to_value(&json!(5)), Value::Int(5));
        assert_eq!(
            to_value(&json!(5_000_000_000_i64)),
            Value::Long(5_000_000_000)
        );
        assert_eq!(to_value_as(&json!(5), "D"), Value::Double(5.0));
        assert_eq!(
            to_value_as(&json!(1700000000000_i64), "Ljava/util/Date;"),
            Value::Date(1700000000000)
        );
        assert_eq!(
            to_value_as(&json!("AQID"), "[B"),
            Value::Binary(vec![1, 2, 3])
        );
        assert_eq!(
            to_value_as(&json!([1, 2]), "[I"),
            Value::List(List {
                type_name: Some("[int".into()),
                items: vec![Value::Int(1), Value::Int(2)]
            })
        );
        assert_eq!(
            to_value_as(&json!({"name": "ann"}), "Lcom/example/User;"),
            Value::object("com.example.User", vec![("name", "ann".into())])
        );
        assert_eq!(descriptor_from_name("java.lang.Long"), "Ljava/lang/Long;");
        assert_eq!(descriptor_from_name("int[]"), "[I");
        assert_eq!(descriptor_from_name("J"), "J");
    }

    #[test]
    fn json_of_java_values() {
        assert_eq!(from_value(&Value::Double(f64::NAN)), json!("NaN"));
        assert_eq!(from_value(&Value::Binary(vec![1, 2, 3])), json!("AQID"));
        let m = Value::Map(Map {
            type_name: Some("java.util.TreeMap".into()),
            entries: vec![(Value::Int(1), "a".into())],
        });
        assert_eq!(from_value(&m), json!({"1": "a"}));
        let user = Value::object(
            "com.example.User",
            vec![("name", "ann".into()), ("age", 7.into())],
        );
        assert_eq!(
            from_value(&user),
            json!({"class": "com.example.User", "name": "ann", "age": 7})
        );
        assert_eq!(to_value(&from_value(&user)), user);
        // A list holding itself: the cycle closes with null.
        let cyclic = Value::list(vec![Value::Ref(0)]);
        assert_eq!(from_value(&cyclic), json!([null]));
        // A shared value is written again.
        let shared = Value::list(vec![user.clone(), Value::Ref(1)]);
        let u = json!({"class": "com.example.User", "name": "ann", "age": 7});
        assert_eq!(from_value(&shared), json!([u, u]));
        // An enum constant is its name.
        let gold = Value::object("com.example.Level", vec![("name", "GOLD".into())]);
        assert_eq!(from_value(&gold), json!("GOLD"));
    }
}
