//! The text form of a URL: parsing and formatting (lossless, as the `url` module says), the
//! registry node form, serde as a string, and Java's `URLEncoder` / `URLDecoder`.

use std::fmt;
use std::str::FromStr;

use super::{Param, Url, UrlError};

impl Url {
    /// Parses a (decoded) URL string.
    pub fn parse(input: &str) -> Result<Url, UrlError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(UrlError::Empty);
        }
        let (before_query, query) = match s.find('?') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (protocol, rest) = match before_query.find("://") {
            Some(i) => {
                let p = &before_query[..i];
                if p.is_empty()
                    || !p
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
                {
                    return Err(UrlError::InvalidProtocol(p.to_owned()));
                }
                (p.to_owned(), &before_query[i + 3..])
            }
            None => (String::new(), before_query),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.find(':') {
                Some(i) => (Some(u[..i].to_owned()), Some(u[i + 1..].to_owned())),
                None => (Some(u.to_owned()), None),
            },
        };
        let (host, port_text) = if let Some(stripped) = hostport.strip_prefix('[') {
            let end = stripped
                .find(']')
                .ok_or_else(|| UrlError::UnterminatedIpv6(input.to_owned()))?;
            let host = &hostport[..end + 2];
            let after = &stripped[end + 1..];
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => {
                    return Err(UrlError::InvalidPort {
                        port: after.to_owned(),
                        url: input.to_owned(),
                    })
                }
            }
        } else {
            match hostport.rfind(':') {
                Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
                None => (hostport, None),
            }
        };
        // A host has no white space; kept, a trailing one before an empty path ("h /")
        // would end the formatted URL and be trimmed off the next parse.
        let host = host.trim();
        let port = match port_text {
            None => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| UrlError::InvalidPort {
                port: p.to_owned(),
                url: input.to_owned(),
            })?),
        };
        let params = query.map(|q| {
            q.split('&')
                .map(|seg| match seg.find('=') {
                    Some(i) => Param {
                        key: seg[..i].to_owned(),
                        value: Some(seg[i + 1..].to_owned()),
                    },
                    None => Param {
                        key: seg.to_owned(),
                        value: None,
                    },
                })
                .collect()
        });
        if protocol.is_empty()
            && userinfo.is_none()
            && host.is_empty()
            && port.is_none()
            && path.is_empty()
            && params.is_none()
        {
            // Nothing but separators ("/"): there is no URL here.
            return Err(UrlError::Empty);
        }
        Ok(Url {
            protocol,
            username,
            password,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            params,
        })
    }

    /// Decodes a registry node name (`URL.encode(url)`) and parses it.
    pub fn from_encoded(encoded: &str) -> Result<Url, UrlError> {
        Url::parse(&decode(encoded)?)
    }

    /// The encoded form used as a registry node name.
    pub fn to_encoded(&self) -> String {
        encode(&self.to_string())
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.protocol.is_empty() {
            write!(f, "{}://", self.protocol)?;
        }
        if let Some(u) = &self.username {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        if let Some(params) = &self.params {
            f.write_str("?")?;
            for (i, p) in params.iter().enumerate() {
                if i > 0 {
                    f.write_str("&")?;
                }
                f.write_str(&p.key)?;
                if let Some(v) = &p.value {
                    write!(f, "={v}")?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for Url {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Url, UrlError> {
        Url::parse(s)
    }
}

impl serde::Serialize for Url {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Url {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let s = String::deserialize(d)?;
        Url::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Java `URLEncoder.encode(s, "UTF-8")`: `A-Z a-z 0-9 . - * _` kept, space as `+`, every
/// other byte of the UTF-8 form as `%XX` (upper case).
pub fn encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
    }
    out
}

/// Java `URLDecoder.decode(s, "UTF-8")`: `+` is a space, `%XX` a byte; a broken escape or
/// bytes that are not UTF-8 are an error.
pub fn decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => {
                        return Err(UrlError::InvalidEscape {
                            position: i,
                            input: s.to_owned(),
                        })
                    }
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::InvalidUtf8)
}
