//! UDP pushes: the server sends a service's new data to the port subscriptions name in
//! their list queries; the client acknowledges and wakes the subscriptions.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::api::Shared;
use crate::model::ServiceInfo;

/// Receives pushes, acknowledges them and hands the service data to its subscriptions.
pub(crate) async fn receive_pushes(sock: Arc<UdpSocket>, inner: Weak<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "push receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        match decode_push(&buf[..n]) {
            Ok(push) => {
                let ack = serde_json::json!({
                    "type": if push.kind == "dom" { "push-ack" } else { "unknown-ack" },
                    "lastRefTime": push.last_ref_time,
                    "data": "",
                });
                let _ = sock.send_to(ack.to_string().as_bytes(), from).await;
                if push.kind == "dom" {
                    match serde_json::from_str::<ServiceInfo>(&push.data) {
                        Ok(info) => inner.update(info),
                        Err(e) => tracing::debug!(error = %e, "unreadable pushed service"),
                    }
                }
            }
            Err(e) => tracing::debug!(%from, error = %e, "ignoring a datagram that is not a push"),
        }
    }
}

/// A push packet.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushPacket {
    /// `dom` for a service update.
    #[serde(rename = "type")]
    pub kind: String,
    /// The service JSON.
    #[serde(default)]
    pub data: String,
    /// Identifies the push; echoed in the ack.
    #[serde(default)]
    pub last_ref_time: u64,
}

/// Decodes a push datagram (plain or gzip-compressed JSON). Never panics; a datagram of
/// more than 64 KiB (uncompressed more than 4 MiB) is refused.
pub fn decode_push(datagram: &[u8]) -> Result<PushPacket, String> {
    use std::io::Read;
    let mut plain;
    let bytes = if datagram.starts_with(&[0x1f, 0x8b]) {
        plain = Vec::new();
        flate2::read::GzDecoder::new(datagram)
            .take(4 * 1024 * 1024 + 1)
            .read_to_end(&mut plain)
            .map_err(|e| format!("bad gzip: {e}"))?;
        if plain.len() > 4 * 1024 * 1024 {
            return Err("push larger than 4 MiB".into());
        }
        &plain[..]
    } else {
        datagram
    };
    serde_json::from_slice(bytes).map_err(|e| format!("bad push JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn push_packets_plain_and_gzip() {
        let raw = br#"{"type":"dom","data":"{\"name\":\"G@@s\",\"hosts\":[]}","lastRefTime":42}"#;
        let p = decode_push(raw).unwrap();
        assert_eq!((p.kind.as_str(), p.last_ref_time), ("dom", 42));
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(raw).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(decode_push(&z).unwrap().data, p.data);
        assert!(decode_push(b"\x1f\x8bgarbage").is_err());
        assert!(decode_push(b"{").is_err());
    }

    proptest! {
        #[test]
        fn push_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_push(&data);
        }

        #[test]
        fn gzip_push_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = vec![0x1f, 0x8b];
            d.extend(data);
            let _ = decode_push(&d);
        }
    }
}
