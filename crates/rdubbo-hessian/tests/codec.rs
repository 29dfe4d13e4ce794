//! Wire forms from the Hessian 2.0 spec, serde round trips, and hostile input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rdubbo_hessian::{
    decode_value, encode_value, from_slice, to_bytes, BigDecimal, Bytes, Date, Decoder, Encoder,
    Error, List, Map, Object, Throwable, Value,
};
use serde::{Deserialize, Serialize};

fn enc(f: impl FnOnce(&mut Encoder)) -> Vec<u8> {
    let mut e = Encoder::new();
    f(&mut e);
    e.into_bytes()
}

#[test]
fn ints_use_the_spec_forms() {
    let cases: &[(i32, &[u8])] = &[
        (0, &[0x90]),
        (-16, &[0x80]),
        (47, &[0xbf]),
        (48, &[0xc8, 0x30]),
        (-2048, &[0xc0, 0x00]),
        (2047, &[0xcf, 0xff]),
        (-2049, &[0xd3, 0xf7, 0xff]),
        (-262144, &[0xd0, 0x00, 0x00]),
        (262143, &[0xd7, 0xff, 0xff]),
        (262144, &[b'I', 0x00, 0x04, 0x00, 0x00]),
        (i32::MIN, &[b'I', 0x80, 0, 0, 0]),
    ];
    for (v, bytes) in cases {
        assert_eq!(enc(|e| e.write_int(*v)), *bytes, "int {v}");
        assert_eq!(decode_value(bytes).unwrap(), Value::Int(*v));
    }
}

#[test]
fn longs_use_the_spec_forms() {
    let cases: &[(i64, &[u8])] = &[
        (0, &[0xe0]),
        (-8, &[0xd8]),
        (15, &[0xef]),
        (-2048, &[0xf0, 0x00]),
        (2047, &[0xff, 0xff]),
        (-262144, &[0x38, 0x00, 0x00]),
        (262143, &[0x3f, 0xff, 0xff]),
        (262144, &[0x59, 0x00, 0x04, 0x00, 0x00]),
        (i64::from(i32::MAX) + 1, &[b'L', 0, 0, 0, 0, 0x80, 0, 0, 0]),
    ];
    for (v, bytes) in cases {
        assert_eq!(enc(|e| e.write_long(*v)), *bytes, "long {v}");
        assert_eq!(decode_value(bytes).unwrap(), Value::Long(*v));
    }
}

#[test]
fn doubles_use_the_spec_forms() {
    let cases: &[(f64, &[u8])] = &[
        (0.0, &[0x5b]),
        (1.0, &[0x5c]),
        (-128.0, &[0x5d, 0x80]),
        (127.0, &[0x5d, 0x7f]),
        (-32768.0, &[0x5e, 0x80, 0x00]),
        (32767.0, &[0x5e, 0x7f, 0xff]),
        (12.25, &[0x5f, 0x00, 0x00, 0x2f, 0xda]),
        // Whole thousandths travel as an int of thousandths (Caucho's form).
        (0.1, &[0x5f, 0x00, 0x00, 0x00, 0x64]),
        (
            0.3333,
            &[b'D', 0x3f, 0xd5, 0x54, 0xc9, 0x85, 0xf0, 0x6f, 0x69],
        ),
    ];
    for (v, bytes) in cases {
        assert_eq!(enc(|e| e.write_double(*v)), *bytes, "double {v}");
        assert_eq!(decode_value(bytes).unwrap(), Value::Double(*v));
    }
    let nan = decode_value(&enc(|e| e.write_double(f64::NAN))).unwrap();
    assert!(matches!(nan, Value::Double(d) if d.is_nan()));
}

#[test]
fn dates_strings_binary_lists_maps_objects_match_the_spec_examples() {
    // 09:51:31 May 8, 1998 UTC, and the same minute without seconds.
    assert_eq!(
        enc(|e| e.write_date(894621091000)),
        [0x4a, 0x00, 0x00, 0x00, 0xd0, 0x4b, 0x92, 0x84, 0xb8]
    );
    assert_eq!(
        enc(|e| e.write_date(894621060000)),
        [0x4b, 0x00, 0xe3, 0x83, 0x8f]
    );
    assert_eq!(enc(|e| e.write_str("")), [0x00]);
    assert_eq!(enc(|e| e.write_str("hello")), b"\x05hello");
    assert_eq!(enc(|e| e.write_str("\u{00c3}")), [0x01, 0xc3, 0x83]);
    assert_eq!(enc(|e| e.write_bytes(&[])), [0x20]);
    assert_eq!(enc(|e| e.write_bytes(&[1, 2, 3])), [0x23, 1, 2, 3]);
    // int[] {0, 1}: compact typed list.
    let int_array = Value::List(List {
        type_name: Some("[int".into()),
        items: vec![Value::Int(0), Value::Int(1)],
    });
    assert_eq!(encode_value(&int_array), b"\x72\x04[int\x90\x91");
    // Untyped list of two.
    assert_eq!(
        encode_value(&Value::list(vec![0.into(), "foobar".into()])),
        b"\x7a\x90\x06foobar"
    );
    // Map {1: "fee", 16: "fie", 256: "foe"}.
    let map = Value::map(vec![
        (1.into(), "fee".into()),
        (16.into(), "fie".into()),
        (256.into(), "foe".into()),
    ]);
    assert_eq!(
        encode_value(&map),
        b"H\x91\x03fee\xa0\x03fie\xc9\x00\x03foeZ"
    );
    // Two cars: one class definition, two instances.
    let car = |color: &str, model: &str| {
        Value::object(
            "example.Car",
            vec![("color", color.into()), ("model", model.into())],
        )
    };
    let cars = Value::list(vec![car("red", "corvette"), car("green", "civic")]);
    let bytes = encode_value(&cars);
    assert_eq!(
        bytes,
        b"\x7aC\x0bexample.Car\x92\x05color\x05model\x60\x03red\x08corvette\x60\x05green\x05civic"
            .as_slice()
    );
    assert_eq!(decode_value(&bytes).unwrap(), cars);
}

#[test]
fn strings_count_utf16_units_and_chunk() {
    // A character outside the BMP is two UTF-16 units, written as two 3-byte surrogates.
    let s = "a\u{1F600}";
    let bytes = enc(|e| e.write_str(s));
    assert_eq!(bytes, [0x03, b'a', 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]);
    assert_eq!(decode_value(&bytes).unwrap(), Value::String(s.into()));
    // 4-byte UTF-8, as some peers write it, is read too.
    let four = [0x03, b'a', 0xf0, 0x9f, 0x98, 0x80];
    assert_eq!(decode_value(&four).unwrap(), Value::String(s.into()));
    // Long strings: 0x8000-unit chunks `R`, then the rest; the chunk never splits a pair.
    let long: String = "x".repeat(0x7fff) + "\u{1F600}" + &"y".repeat(40);
    let bytes = enc(|e| e.write_str(&long));
    assert_eq!(bytes[0], b'R');
    assert_eq!(u16::from_be_bytes([bytes[1], bytes[2]]), 0x7fff);
    assert_eq!(decode_value(&bytes).unwrap(), Value::String(long.clone()));
    let big = "é".repeat(100_000);
    assert_eq!(
        decode_value(&enc(|e| e.write_str(&big))).unwrap(),
        Value::String(big)
    );
    let blob: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    assert_eq!(
        decode_value(&enc(|e| e.write_bytes(&blob))).unwrap(),
        Value::Binary(blob)
    );
}

#[test]
fn shared_and_cyclic_references() {
    // [obj, ref obj]: the second stays a reference to the first (shared, as in Java).
    let obj = Value::object("a.B", vec![("x", 1.into())]);
    let shared = Value::list(vec![obj.clone(), Value::Ref(1)]);
    let bytes = encode_value(&shared);
    assert_eq!(&bytes[bytes.len() - 2..], &[0x51, 0x91]);
    assert_eq!(decode_value(&bytes).unwrap(), shared);
    assert_eq!(Value::resolve(std::slice::from_ref(&shared), 1), Some(&obj));
    // Typed decoding still reads the shared value for each occurrence.
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename = "a.B")]
    struct B {
        x: i32,
    }
    assert_eq!(
        from_slice::<Vec<B>>(&bytes).unwrap(),
        vec![B { x: 1 }, B { x: 1 }]
    );
    // An object that refers to itself keeps the cycle as a Ref.
    let cyclic = Value::object("a.Node", vec![("next", Value::Ref(0))]);
    let bytes = encode_value(&cyclic);
    assert_eq!(decode_value(&bytes).unwrap(), cyclic);
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Node {
        next: Option<Box<Node>>,
    }
    assert!(matches!(
        from_slice::<Node>(&bytes),
        Err(Error::Cycle { index: 0, .. })
    ));
}

#[test]
fn shared_cyclic_values_round_trip_byte_for_byte() {
    // Found by fuzzing: a shared object that refers to itself, referenced again later.
    // References stay references, so the decoded value encodes to the same stream.
    let input = include_bytes!("../../../fuzz/seeds/hessian_decode/regression-shared-and-cyclic");
    let v = decode_value(input).unwrap();
    let again = encode_value(&v);
    assert_eq!(encode_value(&decode_value(&again).unwrap()), again);
    // A hand-made case: [obj{self: ref obj}, ref obj].
    let cyclic = Value::object("a.Node", vec![("me", Value::Ref(1))]);
    let graph = Value::list(vec![cyclic, Value::Ref(1)]);
    let bytes = encode_value(&graph);
    assert_eq!(decode_value(&bytes).unwrap(), graph);
    assert_eq!(encode_value(&decode_value(&bytes).unwrap()), bytes);
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(rename = "com.example.Kind")]
enum Kind {
    Gold,
    Silver,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(rename = "com.example.Address")]
struct Address {
    city: String,
    zip: Option<i32>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(rename = "com.example.User")]
struct User {
    id: i64,
    name: String,
    score: f64,
    active: bool,
    kind: Kind,
    born: Date,
    avatar: Bytes,
    balance: BigDecimal,
    tags: Vec<String>,
    attrs: BTreeMap<String, i32>,
    home: Address,
    work: Option<Address>,
}

fn user(i: i64) -> User {
    User {
        id: i,
        name: format!("user-{i}"),
        score: 12.25,
        active: i % 2 == 0,
        kind: if i % 2 == 0 { Kind::Gold } else { Kind::Silver },
        born: Date(894621091000),
        avatar: Bytes(vec![1, 2, 3]),
        balance: BigDecimal::new("1234.50"),
        tags: vec!["a".into(), "b".into()],
        attrs: [("x".to_string(), 1), ("y".to_string(), 300)].into(),
        home: Address {
            city: "Hangzhou".into(),
            zip: Some(310000),
        },
        work: None,
    }
}

#[test]
fn serde_structs_enums_dates_round_trip_and_share_class_definitions() {
    let users = vec![user(1), user(2)];
    let bytes = to_bytes(&users).unwrap();
    // The class definition of User comes first (as Java writes it), then Address, Kind…
    assert_eq!(&bytes[..3], b"\x7aC\x10");
    assert_eq!(&bytes[3..19], b"com.example.User");
    let back: Vec<User> = from_slice(&bytes).unwrap();
    assert_eq!(back, users);
    // The same bytes again on a second call (the field names are known by then).
    assert_eq!(to_bytes(&users).unwrap(), bytes);
    // Dynamic view: User is an object, Kind an enum object with `name`.
    let Value::List(list) = decode_value(&bytes).unwrap() else {
        panic!()
    };
    let Value::Object(u) = &list.items[1] else {
        panic!()
    };
    assert_eq!(u.class, "com.example.User");
    let Some(Value::Object(kind)) = u.field("kind") else {
        panic!()
    };
    assert_eq!(kind.class, "com.example.Kind");
    assert_eq!(kind.field("name"), Some(&Value::from("Gold")));
    assert_eq!(u.field("born"), Some(&Value::Date(894621091000)));
    assert_eq!(u.field("avatar"), Some(&Value::Binary(vec![1, 2, 3])));
    // A map with the fields deserializes into the struct too (Java HashMap form).
    let addr = Value::map(vec![
        ("city".into(), "Ningbo".into()),
        ("zip".into(), Value::Null),
    ]);
    let a: Address = rdubbo_hessian::from_value(&addr).unwrap();
    assert_eq!(
        a,
        Address {
            city: "Ningbo".into(),
            zip: None
        }
    );
    // Enum from a plain string.
    let k: Kind = from_slice(b"\x04Gold").unwrap();
    assert_eq!(k, Kind::Gold);
}

#[test]
fn renamed_classes_and_streams_of_several_values() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }
    let mut e = Encoder::new();
    e.rename_class("Point", "com.example.Point");
    e.write(&Point { x: 1, y: 2 }).unwrap();
    e.write(&Point { x: 3, y: 4 }).unwrap();
    e.write("tail").unwrap();
    let bytes = e.into_bytes();
    let mut d = Decoder::new(&bytes);
    let Value::Object(first) = d.read_value().unwrap() else {
        panic!()
    };
    assert_eq!(first.class, "com.example.Point");
    // The second value uses the class definition of the first.
    assert_eq!(d.remaining()[0], 0x60);
    let second: Point = d.read().unwrap();
    assert_eq!(second, Point { x: 3, y: 4 });
    assert_eq!(d.read::<String>().unwrap(), "tail");
    assert!(d.is_at_end());
}

#[test]
fn throwables_read_from_java_shape() {
    let t = Throwable {
        class: "java.lang.IllegalStateException".into(),
        message: Some("bad state".into()),
        stack_trace: vec![rdubbo_hessian::StackFrame {
            declaring_class: "com.example.Svc".into(),
            method_name: "run".into(),
            file_name: Some("Svc.java".into()),
            line_number: 42,
        }],
        cause: None,
    };
    let v = decode_value(&encode_value(&t.to_value())).unwrap();
    assert_eq!(Throwable::from_value(&v), Some(t));
    assert_eq!(Throwable::from_value(&Value::Int(1)), None);
}

#[test]
fn hostile_input_gives_errors() {
    let cases: &[&[u8]] = &[
        b"",
        b"\x05abc",            // string shorter than its length
        b"\x58\xd7\xff\xff",   // list of 262143 items, none present
        b"\x72\x95",           // typed list naming an unknown type ref
        b"\x61",               // instance of an undefined class
        b"\x51\x90",           // reference to nothing
        b"H\x90",              // map without end
        b"\x02\xff\xfe",       // bad UTF-8
        b"C\x01A\xd7\xff\xff", // class with 262143 fields, none present
        b"\x40",               // reserved tag
        b"R\xff\xff",          // string chunk without data
    ];
    for c in cases {
        assert!(decode_value(c).is_err(), "{c:x?} decoded");
        assert!(from_slice::<Value2>(c).is_err(), "{c:x?} decoded (serde)");
    }
    // Deep nesting stops at the limit instead of overflowing the stack.
    let deep = vec![0x79u8; 100_000];
    assert_eq!(decode_value(&deep), Err(Error::TooDeep(128)));
    // References that double at every level stop at the budget.
    // Level k is [level k+1, ref level k+1]: 2^40 values from 122 bytes.
    let mut bomb = vec![0x7a; 40];
    bomb.push(0x78);
    for i in (1..=40u8).rev() {
        bomb.extend_from_slice(&[0x51, 0x90 + i]);
    }
    // As a dynamic value it stays the size of its input: references are not copied.
    let v = decode_value(&bomb).unwrap();
    assert_eq!(encode_value(&v), bomb);
    // A typed reader follows references, and stops at its budget.
    assert!(matches!(
        from_slice::<serde_json::Value>(&bomb),
        Err(Error::TooLarge(_))
    ));
}

/// Any serde-deserializable type for the hostile-input checks.
type Value2 = serde::de::IgnoredAny;

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        any::<f64>()
            .prop_filter("NaN never equals", |d| !d.is_nan())
            .prop_map(Value::Double),
        ".{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Binary),
        any::<i64>().prop_map(Value::Date),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            (
                proptest::option::of("[a-z.\\[]{1,12}"),
                proptest::collection::vec(inner.clone(), 0..10)
            )
                .prop_map(|(type_name, items)| Value::List(List { type_name, items })),
            (
                proptest::option::of("[a-z.]{1,12}"),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..6)
            )
                .prop_map(|(type_name, entries)| Value::Map(Map { type_name, entries })),
            (
                "[a-z]{1,6}\\.[A-Z][a-z]{0,6}",
                proptest::collection::vec(("[a-z]{1,8}", inner), 0..5)
            )
                .prop_map(|(class, fields)| Value::Object(Object { class, fields })),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn values_round_trip(v in arb_value()) {
        let bytes = encode_value(&v);
        let back = decode_value(&bytes).unwrap();
        // -0.0 is written as 0.0, as Java does.
        prop_assert_eq!(encode_value(&back), bytes);
    }

    #[test]
    fn serde_value_views_agree(v in arb_value()) {
        // Reading any value through serde (here: into serde_json) never fails where
        // reading it as a Value succeeds, and sees the same shape for scalars.
        let bytes = encode_value(&v);
        let json: Result<serde_json::Value, _> = from_slice(&bytes);
        if let (Value::String(s), Ok(serde_json::Value::String(j))) = (&v, &json) {
            prop_assert_eq!(s, j);
        }
        // (serde_json has no binary, and only string map keys.)
        prop_assert!(json.is_ok() || matches!(v, Value::Binary(_) | Value::Map(_) | Value::List(_) | Value::Object(_)));
    }

    #[test]
    fn skipping_steps_over_what_reading_reads(v in arb_value()) {
        let bytes = encode_value(&v);
        let mut read = rdubbo_hessian::Decoder::new(&bytes);
        let mut skip = rdubbo_hessian::Decoder::new(&bytes);
        read.read_value().unwrap();
        skip.skip_value().unwrap();
        prop_assert_eq!(read.position(), skip.position());
    }

    #[test]
    fn skipping_garbage_fails_where_reading_does(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut read = rdubbo_hessian::Decoder::new(&bytes);
        let mut skip = rdubbo_hessian::Decoder::new(&bytes);
        match (read.read_value(), skip.skip_value()) {
            (Ok(_), Ok(())) => prop_assert_eq!(read.position(), skip.position()),
            (Err(_), Err(_)) => {}
            (r, s) => prop_assert!(false, "read {:?}, skip {:?}", r, s),
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_value(&bytes);
        let _ = from_slice::<serde_json::Value>(&bytes);
        let _ = from_slice::<Vec<User>>(&bytes);
    }

    #[test]
    fn ints_longs_doubles_round_trip(i in any::<i32>(), l in any::<i64>(), d in any::<f64>()) {
        prop_assert_eq!(decode_value(&enc(|e| e.write_int(i))).unwrap(), Value::Int(i));
        prop_assert_eq!(decode_value(&enc(|e| e.write_long(l))).unwrap(), Value::Long(l));
        let back = decode_value(&enc(|e| e.write_double(d))).unwrap();
        match back {
            Value::Double(b) => prop_assert!(b == d || (b.is_nan() && d.is_nan())),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Shape {
    Pair(i32, i32),
    Named { a: i32, b: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Point(i32, i32);

/// Tuples, tuple structs, sequences, maps, non-unit enum variants and integers of every
/// width as the Encoder's own primitives write them; integers beyond a long are refused by
/// name.
#[test]
fn compound_values_are_written_with_the_encoders_primitives() {
    let seq = enc(|e| {
        e.write_list_begin(2, None);
        e.write_int(1);
        e.write_int(2);
    });
    assert_eq!(to_bytes(&(1, 2)).unwrap(), seq);
    assert_eq!(to_bytes(&Point(1, 2)).unwrap(), seq);
    assert_eq!(to_bytes(&vec![1, 2]).unwrap(), seq);
    assert_eq!(from_slice::<Point>(&seq).unwrap(), Point(1, 2));

    let map: BTreeMap<&str, i32> = [("k", 1)].into_iter().collect();
    assert_eq!(
        to_bytes(&map).unwrap(),
        enc(|e| {
            e.write_map_begin(None);
            e.write_str("k");
            e.write_int(1);
            e.write_end();
        })
    );

    let pair = Shape::Pair(1, 2);
    let bytes = to_bytes(&pair).unwrap();
    assert_eq!(
        bytes,
        enc(|e| {
            e.write_map_begin(None);
            e.write_str("Pair");
            e.write_list_begin_variable(None);
            e.write_int(1);
            e.write_int(2);
            e.write_end();
            e.write_end();
        })
    );
    assert_eq!(from_slice::<Shape>(&bytes).unwrap(), pair);
    let named = Shape::Named {
        a: 1,
        b: "x".into(),
    };
    let bytes = to_bytes(&named).unwrap();
    assert_eq!(
        bytes,
        enc(|e| {
            e.write_map_begin(None);
            e.write_str("Named");
            e.write_map_begin(None);
            e.write_str("a");
            e.write_int(1);
            e.write_str("b");
            e.write_str("x");
            e.write_end();
            e.write_end();
        })
    );
    assert_eq!(from_slice::<Shape>(&bytes).unwrap(), named);

    assert_eq!(to_bytes(&-3i8).unwrap(), enc(|e| e.write_int(-3)));
    assert_eq!(to_bytes(&-300i16).unwrap(), enc(|e| e.write_int(-300)));
    assert_eq!(to_bytes(&200u8).unwrap(), enc(|e| e.write_int(200)));
    assert_eq!(to_bytes(&60_000u16).unwrap(), enc(|e| e.write_int(60_000)));
    assert_eq!(
        to_bytes(&i128::from(i64::MIN)).unwrap(),
        enc(|e| e.write_long(i64::MIN))
    );
    assert_eq!(
        to_bytes(&(i64::MAX as u64)).unwrap(),
        enc(|e| e.write_long(i64::MAX))
    );
    for too_big in [
        to_bytes(&(u64::MAX)),
        to_bytes(&u128::MAX),
        to_bytes(&i128::MIN),
    ] {
        match too_big {
            Err(Error::OutOfRange { target, .. }) => assert_eq!(target, "a Hessian long"),
            other => panic!("{other:?}"),
        }
    }
}
