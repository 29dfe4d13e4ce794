//! Logins: stateless signed tokens (HS256 JWTs, as Nacos issues, signed with a random key
//! of this process, expiry inside) and a throttle of failed credential checks per source
//! address (a token bucket per IPv4 address or IPv6 /64).
//!
//! No token is stored, so no number of logins can fill a table; guessing costs one
//! attempt per `1 / login_failures_per_sec` seconds per address once the burst is spent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Most addresses tracked by the throttle; beyond, new addresses share one bucket.
const MAX_TRACKED: usize = 16_384;

/// Why a token was refused, in Nacos' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    Invalid,
    Expired,
}

impl TokenError {
    pub fn message(self) -> &'static str {
        match self {
            TokenError::Invalid => "token invalid!",
            TokenError::Expired => "token expired!",
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub(crate) struct Auth {
    user: String,
    password: String,
    key: [u8; 32],
    ttl: Duration,
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The throttle's key of an address: IPv4 as is, IPv6 by its /64 (one host's share).
fn throttle_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
        v4 => v4,
    }
}

impl Auth {
    /// `burst` failed checks at once, then `per_sec` per second, per address.
    pub fn new(user: String, password: String, ttl: Duration, burst: u32, per_sec: f64) -> Auth {
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::getrandom(&mut key) {
            // No system randomness: a key from the clock and the process still differs per
            // run, but say so.
            tracing::warn!(error = %e, "no system randomness for the token key");
            let seed = format!("{:?}{}{}", Instant::now(), now_secs(), std::process::id());
            let mut mac = HmacSha256::new_from_slice(seed.as_bytes()).expect("any key length");
            mac.update(b"rdubbo-naming-token-key");
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        Auth {
            user,
            password,
            key,
            ttl,
            burst: f64::from(burst.max(1)),
            per_sec: per_sec.max(0.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("any key length")
    }

    /// Whether the credentials are the configured ones (compared in constant time).
    pub fn credentials_match(&self, user: &str, password: &str) -> bool {
        let digest = |s: &str| {
            let mut m = self.mac();
            m.update(s.as_bytes());
            m.finalize().into_bytes()
        };
        let a = digest(user) == digest(&self.user);
        let b = digest(password) == digest(&self.password);
        a & b
    }

    /// A new token: `header.payload.signature`, payload `{"sub":user,"exp":seconds}`.
    /// It expires no earlier than the token lifetime (`exp` is rounded up to a second).
    pub fn issue(&self) -> String {
        let exp = (now_secs() + self.ttl.as_secs_f64()).ceil() as u64;
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = B64.encode(serde_json::json!({"sub": self.user, "exp": exp}).to_string());
        let signing = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing}.{sig}")
    }

    /// Checks a token's signature, subject and expiry.
    pub fn verify(&self, token: &str) -> Result<(), TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Invalid);
        }
        let (signing, sig) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Invalid)?;
        let mut mac = self.mac();
        mac.update(signing.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Invalid)?;
        let (_, payload) = signing.split_once('.').ok_or(TokenError::Invalid)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Invalid)?;
        let claims: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
        if claims["sub"].as_str() != Some(self.user.as_str()) {
            return Err(TokenError::Invalid);
        }
        let exp = claims["exp"].as_f64().ok_or(TokenError::Invalid)?;
        if now_secs() >= exp {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// Before checking credentials from `ip`: `Err(seconds to wait)` while its failures
    /// are over the limit.
    pub fn may_try(&self, ip: IpAddr) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = throttle_key(ip);
        let Some(b) = buckets.get_mut(&key) else {
            return Ok(());
        };
        let now = Instant::now();
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            Ok(())
        } else if self.per_sec > 0.0 {
            Err(((1.0 - b.tokens) / self.per_sec).ceil().max(1.0) as u64)
        } else {
            Err(u64::from(u32::MAX))
        }
    }

    /// Records a failed credential check from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut key = throttle_key(ip);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            // Forget addresses whose bucket has filled up again.
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
            if buckets.len() >= MAX_TRACKED {
                // Still full: new addresses share one bucket.
                key = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
            }
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_sec).min(self.burst);
        b.at = now;
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(ttl: Duration) -> Auth {
        Auth::new("nacos".into(), "pw".into(), ttl, 3, 1.0)
    }

    #[test]
    fn tokens_are_signed_jwts_that_expire() {
        let a = auth(Duration::from_secs(60));
        let t = a.issue();
        assert_eq!(t.split('.').count(), 3);
        assert_eq!(a.verify(&t), Ok(()));
        // Another process' key, a changed payload, garbage: invalid.
        assert_eq!(
            auth(Duration::from_secs(60)).verify(&t),
            Err(TokenError::Invalid)
        );
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = B64.encode(br#"{"sub":"nacos","exp":99999999999}"#);
        assert_eq!(a.verify(&parts.join(".")), Err(TokenError::Invalid));
        assert_eq!(a.verify("x"), Err(TokenError::Invalid));
        assert_eq!(a.verify(""), Err(TokenError::Invalid));
        let expired = auth(Duration::ZERO);
        let t = expired.issue();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(expired.verify(&t), Err(TokenError::Expired));
    }

    #[test]
    fn failures_are_throttled_per_address() {
        let a = auth(Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(a.may_try(ip).is_ok());
            a.failed(ip);
        }
        assert!(a.may_try(ip).is_err());
        assert!(a.may_try(other).is_ok());
        // One IPv6 host is its /64.
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        for _ in 0..3 {
            a.failed(v6);
        }
        assert!(a.may_try(v6b).is_err());
        assert!(a.credentials_match("nacos", "pw"));
        assert!(!a.credentials_match("nacos", "pw2"));
        assert!(!a.credentials_match("nacoz", "pw"));
    }
}
