//! Any bytes as a Dubbo frame: header, then request and response bodies; an error or a
//! value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdubbo_protocol_dubbo::codec::{self, Header, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() >= HEADER_LEN {
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&data[..HEADER_LEN]);
        if let Ok(h) = Header::parse(&head) {
            let _ = (h.is_request(), h.is_event(), h.serialization());
        }
    }
    let body = data.get(HEADER_LEN..).unwrap_or(data);
    let bytes = bytes::Bytes::copy_from_slice(body);
    if let Ok(req) = codec::decode_request_body(&bytes) {
        let _ = req.service();
        // As dynamic values and their JSON form (what generic callers and the CLI see) ...
        if let Ok(values) = req.args.to_values() {
            for a in &values {
                let _ = rdubbo_core::json::from_value(a);
                let _ = codec::generalize(a.clone());
            }
        }
        // ... and straight into Rust types, as a typed service decodes them.
        let mut d = req.args.decoder();
        let _ = d.read::<String>();
        let _ = d.read::<Vec<i64>>();
        let _ = d.read::<serde_json::Value>();
    }
    if let Ok((r, _)) = codec::decode_response_body(bytes) {
        if let codec::ResponseBody::Value(reply) = r {
            let _ = reply.to_value();
            let _ = reply.decode::<serde_json::Value>();
        }
    }
    let _ = codec::parse_descriptor(&String::from_utf8_lossy(body));
});
