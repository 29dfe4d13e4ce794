//! Tests of the codec: request and response bodies, descriptors, the generic form.

use super::*;
use bytes::Bytes;
use rdubbo_core::{Args, Reply};
use rdubbo_hessian::{Encoder, Value as HValue};

#[test]
fn response_attachments_by_caller_version() {
    assert!(supports_response_attachments("2.0.2"));
    assert!(supports_response_attachments("2.0.10"));
    assert!(!supports_response_attachments("2.0.1"));
    assert!(!supports_response_attachments("2.6.2"));
    assert!(!supports_response_attachments("2.4.10"));
    assert!(!supports_response_attachments(""));
}

#[test]
fn descriptors_split() {
    assert_eq!(
        parse_descriptor("Ljava/lang/String;I[Ljava/lang/Object;[[J").unwrap(),
        vec!["Ljava/lang/String;", "I", "[Ljava/lang/Object;", "[[J"]
    );
    assert!(parse_descriptor("").unwrap().is_empty());
    assert!(parse_descriptor("Ljava/lang/String").is_err());
    assert!(parse_descriptor("Q").is_err());
}

#[test]
fn request_body_round_trip() {
    let mut e = Encoder::new();
    encode_request_body(
        &mut e,
        "com.example.Echo",
        Some("1.0"),
        "echo",
        &["Ljava/lang/String;", "J"],
        &Args::Values(vec![HValue::from("hi"), HValue::Long(5)]),
        &[("path", "com.example.Echo"), ("timeout", "3000")],
    )
    .unwrap();
    let bytes = Bytes::from(e.into_bytes());
    let body = decode_request_body(&bytes).unwrap();
    assert_eq!(body.path, "com.example.Echo");
    assert_eq!(body.version.as_deref(), Some("1.0"));
    assert_eq!(body.method, "echo");
    assert_eq!(
        body.args.to_values().unwrap(),
        vec![HValue::from("hi"), HValue::Long(5)]
    );
    let mut d = body.args.decoder();
    assert_eq!(d.read::<String>().unwrap(), "hi");
    assert_eq!(d.read::<i64>().unwrap(), 5);
    assert_eq!(body.attachment("timeout"), Some("3000"));
}

#[test]
fn request_texts_borrow_plain_strings_and_convert_the_rest() {
    // Written by hand: a typed attachments map holding a long, a null, a non-ASCII
    // key and a value in two chunks, as other peers may send.
    let mut e = Encoder::new();
    e.write_str("2.0.2");
    e.write_str("com.example.Échos");
    e.write_str("1.0");
    e.write_str("echo");
    e.write_str("Ljava/lang/String;J");
    e.write_str("hi");
    e.write_long(5);
    e.write_map_begin(Some("java.util.HashMap"));
    e.write_str("timeout");
    e.write_long(3000);
    e.write_str("nothing");
    e.write_null();
    e.write_str("clé");
    e.write_str("valeur");
    e.write_str("long");
    e.write_str(&"x".repeat(0x9000));
    e.write_end();
    let bytes = Bytes::from(e.into_bytes());
    let body = decode_request_body(&bytes).unwrap();
    assert_eq!(body.path, "com.example.Échos");
    assert!(matches!(body.path.0, Cow::Owned(_)));
    assert!(matches!(body.dubbo_version.0, Cow::Borrowed(_)));
    assert_eq!(body.parameter_types, ["Ljava/lang/String;", "J"]);
    assert!(body
        .parameter_types
        .iter()
        .all(|t| matches!(t.0, Cow::Borrowed(_))));
    assert_eq!(body.attachment("timeout"), Some("3000"));
    assert_eq!(body.attachment("nothing"), Some(""));
    assert_eq!(body.attachment("clé"), Some("valeur"));
    assert_eq!(body.attachment("long").map(str::len), Some(0x9000));
    let mut d = body.args.decoder();
    assert_eq!(d.read::<String>().unwrap(), "hi");
    assert_eq!(d.read::<i64>().unwrap(), 5);
    assert!(decode_request_body(&Bytes::from_static(&[0x05, b'2'])).is_err());
}

#[test]
fn response_attachments_are_checked_even_when_not_kept() {
    let mut e = Encoder::new();
    e.write_int(response_flag::VALUE_WITH_ATTACHMENTS);
    e.write_str("x");
    e.write_str("not a map");
    let bytes = Bytes::from(e.into_bytes());
    assert!(decode_response(bytes.clone(), true).is_err());
    assert!(decode_response(bytes, false).is_err());
    let mut e = Encoder::new();
    // The flag in a long form: the value starts after it, wherever that is.
    e.write_raw(&[b'I', 0, 0, 0, 4]);
    e.write_str("x");
    e.write_null();
    let (r, att) = decode_response(Bytes::from(e.into_bytes()), false).unwrap();
    let ResponseBody::Value(r) = r else { panic!() };
    assert_eq!(r.decode::<String>().unwrap(), "x");
    assert!(att.is_empty());
}

#[test]
fn response_flags_and_trailing_bytes() {
    for with in [false, true] {
        let mut e = Encoder::new();
        let pairs = [("k".to_string(), "v".to_string())];
        encode_response_body(
            &mut e,
            &ResponseBody::Value(Reply::typed("x")),
            with.then_some(&pairs[..]),
        )
        .unwrap();
        let mut bytes = e.into_bytes();
        assert_eq!(bytes[0], if with { 0x94 } else { 0x91 });
        bytes.push(b'N'); // dubbo-go's trailing null
        let (r, att) = decode_response_body(Bytes::from(bytes)).unwrap();
        let ResponseBody::Value(r) = r else { panic!() };
        assert_eq!(r.decode::<String>().unwrap(), "x");
        assert_eq!(att.is_empty(), !with);
        if with {
            assert!(att.contains(&("k".to_string(), "v".to_string())));
        }
    }
    assert!(decode_response_body(Bytes::from_static(&[0x99])).is_err());
}

#[test]
fn generic_form_of_objects() {
    let user = HValue::object(
        "com.example.User",
        vec![
            ("name", "ann".into()),
            (
                "level",
                HValue::object("com.example.Level", vec![("name", "GOLD".into())]),
            ),
        ],
    );
    let g = generalize(user.clone());
    assert_eq!(
        g,
        HValue::map(vec![
            ("class".into(), "com.example.User".into()),
            ("name".into(), "ann".into()),
            ("level".into(), "GOLD".into()),
        ])
    );
    let back = realize(g);
    let HValue::Object(o) = back else { panic!() };
    assert_eq!(o.class, "com.example.User");
    assert_eq!(o.field("name"), Some(&HValue::from("ann")));
}
