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
    if let Ok(req) = codec::decode_request_body(body) {
        let _ = req.service();
        for a in &req.args {
            let _ = codec::hessian_to_json(a);
        }
    }
    if let Ok((r, _)) = codec::decode_response_body(body) {
        let _ = format!("{r:?}");
    }
    let _ = codec::parse_descriptor(&String::from_utf8_lossy(body));
});
