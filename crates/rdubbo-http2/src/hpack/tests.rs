//! RFC 7541 Appendix C vectors and round trips.

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Bytes {
    let s: String = s.split_whitespace().collect();
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
}

fn list(fields: &[(&str, &str)]) -> Headers {
    fields
        .iter()
        .map(|(n, v)| {
            (
                Bytes::copy_from_slice(n.as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect()
}

fn table(d: &Decoder) -> Vec<(String, String)> {
    d.table
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn integers_c1() {
    let mut v = Vec::new();
    encode_int(&mut v, 0, 5, 10);
    assert_eq!(v, [0x0a]);
    v.clear();
    encode_int(&mut v, 0, 5, 1337);
    assert_eq!(v, [0x1f, 0x9a, 0x0a]);
    v.clear();
    encode_int(&mut v, 0, 8, 42);
    assert_eq!(v, [0x2a]);
    let mut pos = 0;
    assert_eq!(decode_int(&[0x1f, 0x9a, 0x0a], &mut pos, 5), Ok(1337));
    assert_eq!(pos, 3);
}

#[test]
fn literal_c2() {
    let mut d = Decoder::new(4096);
    let mut out = Headers::new();
    let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    assert!(d.decode(&block, 1 << 20, &mut out).unwrap());
    assert_eq!(out, list(&[("custom-key", "custom-header")]));
    assert_eq!(table(&d).len(), 1);
    // C.2.2 without indexing, C.2.3 never indexed, C.2.4 indexed.
    let mut d = Decoder::new(4096);
    let mut out = Headers::new();
    d.decode(
        &hex("040c 2f73 616d 706c 652f 7061 7468"),
        1 << 20,
        &mut out,
    )
    .unwrap();
    d.decode(
        &hex("1008 7061 7373 776f 7264 0673 6563 7265 74"),
        1 << 20,
        &mut out,
    )
    .unwrap();
    d.decode(&hex("82"), 1 << 20, &mut out).unwrap();
    assert_eq!(
        out,
        list(&[
            (":path", "/sample/path"),
            ("password", "secret"),
            (":method", "GET")
        ])
    );
    assert!(table(&d).is_empty());
}

/// C.3 (plain) and C.4 (Huffman): three requests on one connection.
fn requests() -> [Headers; 3] {
    [
        list(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]),
        list(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]),
        list(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]),
    ]
}

#[test]
fn requests_c3_plain() {
    let blocks = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    let mut d = Decoder::new(4096);
    for (block, want) in blocks.iter().zip(requests()) {
        let mut out = Headers::new();
        assert!(d.decode(&hex(block), 1 << 20, &mut out).unwrap());
        assert_eq!(out, want);
    }
    assert_eq!(
        table(&d),
        [
            ("custom-key".to_string(), "custom-value".to_string()),
            ("cache-control".into(), "no-cache".into()),
            (":authority".into(), "www.example.com".into()),
        ]
    );
}

#[test]
fn requests_c4_huffman_both_ways() {
    let blocks = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    let mut d = Decoder::new(4096);
    let mut e = Encoder::new();
    for (block, want) in blocks.iter().zip(requests()) {
        let mut out = Headers::new();
        assert!(d.decode(&hex(block), 1 << 20, &mut out).unwrap());
        assert_eq!(out, want);
        let mut enc = Vec::new();
        e.encode(&want, &mut enc);
        assert_eq!(enc, hex(block).to_vec(), "encoding of {want:?}");
    }
}

fn responses() -> [Headers; 3] {
    [
        list(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ]),
        list(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ]),
        list(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ]),
    ]
}

#[test]
fn responses_c5_plain_and_c6_huffman_with_eviction() {
    let c5 = [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
         3d31",
    ];
    let c6 = [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];
    for blocks in [c5, c6] {
        let mut d = Decoder::new(256);
        for (block, want) in blocks.iter().zip(responses()) {
            let mut out = Headers::new();
            assert!(d.decode(&hex(block), 1 << 20, &mut out).unwrap());
            assert_eq!(out, want);
        }
        assert_eq!(
            table(&d),
            [
                (
                    "set-cookie".to_string(),
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1".to_string()
                ),
                ("content-encoding".into(), "gzip".into()),
                ("date".into(), "Mon, 21 Oct 2013 20:13:22 GMT".into()),
            ]
        );
    }
}

#[test]
fn header_list_limit_keeps_the_table_in_step() {
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    let big = list(&[("x-big", &"v".repeat(300)), ("x-small", "1")]);
    let mut block = Vec::new();
    e.encode(&big, &mut block);
    let mut out = Headers::new();
    assert!(!d.decode(&Bytes::from(block), 100, &mut out).unwrap());
    // The next block refers to the entries the refused one added.
    let mut block = Vec::new();
    e.encode(&list(&[("x-small", "1")]), &mut block);
    assert_eq!(block.len(), 1, "indexed from the dynamic table");
    let mut out = Headers::new();
    assert!(d.decode(&Bytes::from(block), 100, &mut out).unwrap());
    assert_eq!(out, list(&[("x-small", "1")]));
}

#[test]
fn a_grpc_timeout_is_spelled_out_once_then_referred_to() {
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    let mut sizes = Vec::new();
    for timeout in ["1000m", "1000m", "250m", "1000m"] {
        let headers = list(&[(":path", "/a.B/c"), ("grpc-timeout", timeout)]);
        let mut block = Vec::new();
        e.encode(&headers, &mut block);
        sizes.push(block.len());
        let mut out = Headers::new();
        assert!(d.decode(&Bytes::from(block), 1 << 16, &mut out).unwrap());
        assert_eq!(out, headers);
    }
    // First: both spelled out and indexed. Then two indexed fields; a new value is sent
    // with the name's index and not added (the table keeps the first value).
    assert_eq!(sizes[1], 2, "{sizes:?}");
    assert!(sizes[2] > 2 && sizes[2] < sizes[0] - 8, "{sizes:?}");
    assert_eq!(sizes[3], 2, "{sizes:?}");
    assert_eq!(table(&d).len(), 2);
}

#[test]
fn table_size_update_is_announced_and_checked() {
    let mut e = Encoder::new();
    e.set_max_table_size(0);
    e.set_max_table_size(100);
    let mut block = Vec::new();
    e.encode(&list(&[("a", "b")]), &mut block);
    assert_eq!(
        &block[..2],
        &[0x20, 0x3f],
        "0 then 100: 0x20, then 0x3f 0x45"
    );
    let mut d = Decoder::new(4096);
    let mut out = Headers::new();
    d.decode(&Bytes::from(block), 1 << 20, &mut out).unwrap();
    assert_eq!(out, list(&[("a", "b")]));
    // An update above the advertised limit, or after a field, is an error.
    let mut d = Decoder::new(100);
    assert_eq!(
        d.decode(&hex("3f e1 1f"), 1 << 20, &mut Headers::new()),
        Err(HpackError::SizeUpdate)
    );
    assert_eq!(
        d.decode(&hex("82 20"), 1 << 20, &mut Headers::new()),
        Err(HpackError::SizeUpdate)
    );
}

fn field() -> impl Strategy<Value = (Bytes, Bytes)> {
    (
        prop_oneof![
            Just(":path".to_string()),
            Just("content-type".to_string()),
            Just("grpc-status".to_string()),
            "[a-z-]{1,12}",
        ],
        prop_oneof![
            Just("application/grpc".to_string()),
            Just("0".to_string()),
            "[ -~]{0,40}",
        ],
    )
        .prop_map(|(n, v)| (Bytes::from(n), Bytes::from(v)))
}

proptest! {
    #[test]
    fn blocks_round_trip(
        blocks in proptest::collection::vec(proptest::collection::vec(field(), 0..8), 1..12),
        sizes in proptest::collection::vec(0usize..5000, 0..3),
    ) {
        let mut e = Encoder::new();
        let mut d = Decoder::new(4096);
        for (i, fields) in blocks.iter().enumerate() {
            if let Some(s) = sizes.get(i) {
                e.set_max_table_size(*s);
            }
            let h: Headers = fields.iter().cloned().collect();
            let mut block = Vec::new();
            e.encode(&h, &mut block);
            let mut out = Headers::new();
            prop_assert!(d.decode(&Bytes::from(block), 1 << 20, &mut out).unwrap());
            prop_assert_eq!(out, h);
        }
    }

    #[test]
    fn garbage_never_panics_nor_allocates_much(block in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut d = Decoder::new(4096);
        let mut out = Headers::new();
        let _ = d.decode(&Bytes::from(block.clone()), 16 << 10, &mut out);
        prop_assert!(out.list_size() <= 16 << 10);
    }
}
