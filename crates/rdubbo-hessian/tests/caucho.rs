//! Conformance against Caucho Hessian (Debian `libhessian-java`) on the machine's Java:
//! a test-only Java peer (tests/java/HessianPeer.java), compiled here, encodes a corpus of
//! Java values; rdubbo must decode each one, write the byte-identical encoding wherever
//! Hessian has one canonical form, and Java must decode everything rdubbo writes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rdubbo_hessian::{
    decode_value, encode_value, from_slice, to_bytes, BigDecimal, Bytes, Date, List, Map,
    Throwable, Value,
};
use serde::{Deserialize, Serialize};

const HESSIAN_JAR: &str = "/usr/share/java/hessian.jar";
const OPENS: [&str; 6] = [
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.math=ALL-UNNAMED",
];

/// Compiles the Java peer into the target dir and returns its class path.
fn compile_peer() -> String {
    assert!(
        Path::new(HESSIAN_JAR).exists(),
        "{HESSIAN_JAR} missing: apt-get install libhessian-java (scripts/test-all.sh does)"
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hessian-peer");
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/HessianPeer.java");
    let status = Command::new("javac")
        .args(["-d"])
        .arg(&out)
        .args(["-cp", HESSIAN_JAR])
        .arg(&src)
        .status()
        .expect("javac (apt-get install default-jdk-headless; scripts/test-all.sh does)");
    assert!(status.success(), "javac failed");
    format!("{}:{HESSIAN_JAR}", out.display())
}

fn java(cp: &str, mode: &str, input: Option<String>) -> String {
    let mut child = Command::new("java")
        .args(OPENS)
        .args(["-cp", cp, "HessianPeer", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("java");
    {
        let mut stdin = child.stdin.take().unwrap();
        if let Some(text) = input {
            stdin.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "java peer {mode} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(rename = "HessianPeer$Kind")]
#[allow(clippy::upper_case_acronyms)]
enum Kind {
    GOLD,
    SILVER,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(rename = "HessianPeer$Address")]
struct Address {
    city: String,
    zip: Option<i32>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(rename = "HessianPeer$User")]
struct User {
    name: String,
    age: i32,
    score: f64,
    active: bool,
    id: i64,
    tags: Vec<String>,
    attrs: BTreeMap<String, i32>,
    home: Address,
    kind: Kind,
    born: Date,
    avatar: Bytes,
    balance: BigDecimal,
}

fn user() -> User {
    User {
        name: "ann".into(),
        age: 42,
        score: 12.25,
        active: true,
        id: 9_000_000_000,
        tags: vec!["admin".into(), "ops".into()],
        attrs: [("x".to_string(), 1)].into(),
        home: Address {
            city: "Hangzhou".into(),
            zip: Some(310000),
        },
        kind: Kind::SILVER,
        born: Date(894621091000),
        avatar: Bytes(vec![1, 2, 3]),
        balance: BigDecimal::new("1234.50"),
    }
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7) as u8).collect()
}

type Check = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// One corpus entry: rdubbo's encoding, whether it must equal Java's byte for byte, and
/// how to check rdubbo's reading of Java's bytes.
struct Case {
    name: String,
    ours: Option<Vec<u8>>,
    canonical: bool,
    check: Option<Check>,
}

fn value_case(name: impl Into<String>, v: Value) -> Case {
    let ours = encode_value(&v);
    Case {
        name: name.into(),
        ours: Some(ours),
        canonical: true,
        check: Some(Box::new(move |b| {
            let got = decode_value(b).map_err(|e| e.to_string())?;
            let same = match (&got, &v) {
                (Value::Double(a), Value::Double(b)) => a == b || (a.is_nan() && b.is_nan()),
                _ => got == v,
            };
            if same {
                Ok(())
            } else {
                Err(format!("decoded {got:?}, want {v:?}"))
            }
        })),
    }
}

fn serde_case<T>(name: &str, v: T) -> Case
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug + 'static,
{
    Case {
        name: name.into(),
        ours: Some(to_bytes(&v).unwrap()),
        canonical: true,
        check: Some(Box::new(move |b| {
            let got: T = from_slice(b).map_err(|e| e.to_string())?;
            if got == v {
                Ok(())
            } else {
                Err(format!("decoded {got:?}, want {v:?}"))
            }
        })),
    }
}

fn corpus() -> Vec<Case> {
    let mut c = Vec::new();
    for i in [
        0,
        -16,
        47,
        48,
        -2048,
        2047,
        -2049,
        -262144,
        262143,
        262144,
        i32::MIN,
        i32::MAX,
    ] {
        c.push(value_case(format!("int {i}"), Value::Int(i)));
    }
    for l in [
        0,
        -8,
        15,
        16,
        -2048,
        2047,
        -262144,
        262143,
        262144,
        2147483647,
        2147483648,
        i64::MIN,
        i64::MAX,
    ] {
        c.push(value_case(format!("long {l}"), Value::Long(l)));
    }
    let doubles: [(&str, f64); 17] = [
        ("0.0", 0.0),
        ("1.0", 1.0),
        ("-128.0", -128.0),
        ("127.0", 127.0),
        ("128.0", 128.0),
        ("-32768.0", -32768.0),
        ("32767.0", 32767.0),
        ("32768.0", 32768.0),
        ("12.25", 12.25),
        ("0.1", 0.1),
        ("-0.001", -0.001),
        ("0.3333", 0.3333),
        ("1.0E300", 1e300),
        ("-2.5E-300", -2.5e-300),
        ("1.7976931348623157E308", f64::MAX),
        ("NaN", f64::NAN),
        ("Infinity", f64::INFINITY),
    ];
    for (n, d) in doubles {
        c.push(value_case(format!("double {n}"), Value::Double(d)));
    }
    c.push(value_case("null", Value::Null));
    c.push(value_case("true", Value::Bool(true)));
    c.push(value_case("false", Value::Bool(false)));
    let strings = [
        ("string empty", String::new()),
        ("string hello", "hello".into()),
        (
            "string accents",
            "h\u{e9}llo w\u{f6}rld \u{4e2d}\u{6587}".into(),
        ),
        ("string emoji", "a\u{1F600}b".into()),
        ("string 31", "x".repeat(31)),
        ("string 32", "x".repeat(32)),
        ("string 1023", "y".repeat(1023)),
        ("string 1024", "y".repeat(1024)),
        ("string 32768", "z".repeat(32768)),
        ("string 40000 chunked", "z".repeat(40000)),
        ("string 70000 non-ascii", "\u{e9}".repeat(70000)),
    ];
    for (n, s) in strings {
        c.push(value_case(n, Value::String(s)));
    }
    for n in [0, 15, 16, 1023, 1024, 5000, 100000] {
        let mut case = value_case(format!("binary {n}"), Value::Binary(bytes(n)));
        // Java cuts chunks where its 8 KiB output buffer ends: only the content is fixed.
        case.canonical = n < 8000;
        c.push(case);
    }
    c.push(value_case("date ms", Value::Date(894621091000)));
    c.push(value_case("date minutes", Value::Date(894621060000)));
    c.push(value_case("date before epoch", Value::Date(-1000)));
    c.push(value_case("list empty", Value::list(vec![])));
    c.push(value_case(
        "list mixed",
        Value::list(vec![
            1.into(),
            "two".into(),
            3.5.into(),
            Value::Null,
            true.into(),
        ]),
    ));
    c.push(value_case(
        "list ten",
        Value::list((0..10).map(Value::Int).collect()),
    ));
    let typed = |t: &str, items: Vec<Value>| {
        Value::List(List {
            type_name: Some(t.into()),
            items,
        })
    };
    c.push(value_case(
        "int array",
        typed("[int", vec![0.into(), 1.into()]),
    ));
    c.push(value_case(
        "string array",
        typed("[string", vec!["a".into(), "b".into()]),
    ));
    c.push(value_case(
        "long array 8",
        typed("[long", (1..=8).map(Value::Long).collect()),
    ));
    c.push(value_case(
        "nested list",
        Value::list(vec![
            Value::list(vec![1.into(), 2.into()]),
            Value::list(vec![]),
        ]),
    ));
    c.push(value_case("map empty", Value::map(vec![])));
    c.push(value_case(
        "map one",
        Value::map(vec![("a".into(), 1.into())]),
    ));
    c.push(value_case(
        "treemap",
        Value::Map(Map {
            type_name: Some("java.util.TreeMap".into()),
            entries: vec![("a".into(), 1.into()), ("b".into(), 2.into())],
        }),
    ));
    c.push(serde_case(
        "map int key",
        HashMap::from([(1i32, "fee".to_string())]),
    ));
    c.push(serde_case("enum", Kind::GOLD));
    c.push(serde_case("bigdecimal", BigDecimal::new("-98765.4321")));
    c.push(serde_case(
        "address",
        Address {
            city: "Ningbo".into(),
            zip: None,
        },
    ));
    c.push(serde_case("user", user()));
    // The second user's `kind` is the same Java enum constant: written as a reference.
    c.push(serde_case("two users", vec![user(), user()]));
    let shared = Value::object(
        "HessianPeer$Address",
        vec![("city", "Shared".into()), ("zip", 1.into())],
    );
    // Java writes the second as a reference; rdubbo reads it as one (the same value,
    // shared), and writes it back byte for byte.
    c.push(value_case(
        "shared ref",
        Value::list(vec![shared.clone(), Value::Ref(1)]),
    ));
    c.push(Case {
        name: "shared ref typed".into(),
        ours: None,
        canonical: false,
        check: None,
    });
    c.push(Case {
        name: "shared ref from rdubbo".into(),
        ours: Some(encode_value(&Value::list(vec![shared, Value::Ref(1)]))),
        canonical: false,
        check: None,
    });
    c.push(Case {
        name: "exception".into(),
        ours: None,
        canonical: false,
        check: Some(Box::new(|b| {
            let v = decode_value(b).map_err(|e| e.to_string())?;
            let t = Throwable::from_value(&v).ok_or("not a throwable")?;
            if t.class != "java.lang.IllegalStateException"
                || t.message.as_deref() != Some("bad state")
                || t.stack_trace.is_empty()
                || t.stack_trace[0].declaring_class != "HessianPeer"
            {
                return Err(format!("unexpected {t:?}"));
            }
            // Its `cause` is itself: a cycle, kept as a reference.
            let Value::Object(o) = &v else { unreachable!() };
            if o.field("cause") != Some(&Value::Ref(0)) {
                return Err(format!("cause {:?}", o.field("cause")));
            }
            Ok(())
        })),
    });
    c.push(Case {
        name: "exception from rdubbo".into(),
        ours: Some(encode_value(
            &Throwable::new("java.lang.RuntimeException", "boom").to_value(),
        )),
        canonical: false,
        check: None,
    });
    c
}

#[test]
fn caucho_hessian_and_rdubbo_agree() {
    let cp = compile_peer();
    let java_out = java(&cp, "encode", None);
    let from_java: HashMap<&str, Vec<u8>> = java_out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, h)| (n, unhex(h)))
        .collect();
    let cases = corpus();
    let mut failures = Vec::new();
    let mut identical = 0;
    let mut decoded = 0;
    for case in &cases {
        let theirs = from_java.get(case.name.as_str());
        if let (Some(check), Some(theirs)) = (&case.check, theirs) {
            match check(theirs) {
                Ok(()) => decoded += 1,
                Err(e) => failures.push(format!("{}: reading Java's bytes: {e}", case.name)),
            }
        }
        if let (true, Some(ours), Some(theirs)) = (case.canonical, &case.ours, theirs) {
            if ours == theirs {
                identical += 1;
            } else {
                failures.push(format!(
                    "{}: bytes differ\n  java   {}\n  rdubbo {}",
                    case.name,
                    hex(theirs),
                    hex(ours)
                ));
            }
        }
    }
    // Java reads everything rdubbo writes.
    let lines: String = cases
        .iter()
        .filter_map(|c| c.ours.as_ref().map(|b| format!("{}\t{}\n", c.name, hex(b))))
        .collect();
    let verdicts = java(&cp, "decode", Some(lines));
    let mut java_read = 0;
    for line in verdicts.lines() {
        match line.split_once('\t') {
            Some((_, "OK")) => java_read += 1,
            _ => failures.push(format!("java reading rdubbo's bytes: {line}")),
        }
    }
    // Shared references from Java become equal values, typed too.
    let shared = &from_java["shared ref"];
    let addrs: Vec<Address> = from_slice(shared).unwrap();
    assert_eq!(addrs[0], addrs[1]);
    println!(
        "{} cases: {decoded} Java encodings read, {identical} byte-identical, {java_read} rdubbo encodings read by Java",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(java_read, cases.iter().filter(|c| c.ours.is_some()).count());
}
