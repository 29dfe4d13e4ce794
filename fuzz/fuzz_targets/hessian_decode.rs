//! Any bytes into the Hessian2 decoder, as a dynamic value and through serde: an error or
//! a value, never a panic; what decodes re-encodes and decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdubbo_hessian::{decode_value, encode_value, from_slice, Decoder};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode_value(data) {
        let again = encode_value(&v);
        let back = decode_value(&again).expect("re-encoded value decodes");
        // NaN never equals itself; compare the encodings instead.
        assert_eq!(encode_value(&back), again);
    }
    let _ = from_slice::<serde_json::Value>(data);
    // A stream of several values, as in a Dubbo body.
    let mut d = Decoder::new(data);
    while !d.is_at_end() {
        if d.read_value().is_err() {
            break;
        }
    }
});
