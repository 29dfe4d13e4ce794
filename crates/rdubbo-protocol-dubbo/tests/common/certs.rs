//! Test certificates made with rcgen: a CA, a server certificate for `localhost` and
//! 127.0.0.1 signed by it, a client certificate signed by it, and an unrelated CA; written
//! as PEM files into a temporary directory removed on drop (for openssl and curl).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

pub struct Pki {
    pub dir: PathBuf,
    pub ca: String,
    pub server_chain: String,
    pub server_key: String,
    pub client_chain: String,
    pub client_key: String,
    pub other_ca: String,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (p.self_signed(&key).unwrap(), key)
}

fn leaf(
    cn: &str,
    server: bool,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    (p.signed_by(&key, ca, ca_key).unwrap(), key)
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let (ca_cert, ca_key) = ca("rdubbo test CA");
        let (server, server_key) = leaf("rdubbo test server", true, &ca_cert, &ca_key);
        let (client, client_key) = leaf("rdubbo test client", false, &ca_cert, &ca_key);
        let (other, _) = ca("some other CA");
        let dir = std::env::temp_dir().join(format!("rdubbo-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki {
            dir,
            ca: ca_cert.pem(),
            // The chain sent: the leaf, then its CA (s_client shows both).
            server_chain: format!("{}{}", server.pem(), ca_cert.pem()),
            server_key: server_key.serialize_pem(),
            client_chain: client.pem(),
            client_key: client_key.serialize_pem(),
            other_ca: other.pem(),
        };
        for (name, text) in [
            ("ca.pem", &pki.ca),
            ("server.pem", &pki.server_chain),
            ("server.key", &pki.server_key),
            ("client.pem", &pki.client_chain),
            ("client.key", &pki.client_key),
            ("other-ca.pem", &pki.other_ca),
        ] {
            std::fs::write(pki.dir.join(name), text).unwrap();
        }
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn server(&self, mutual: bool) -> rdubbo_tls::ServerTls {
        rdubbo_tls::ServerTls::from_pem_files(
            self.path("server.pem"),
            self.path("server.key"),
            mutual.then(|| self.path("ca.pem")).as_deref(),
        )
        .unwrap()
    }

    pub fn client(&self, with_cert: bool) -> rdubbo_tls::ClientTls {
        let (c, k) = (self.path("client.pem"), self.path("client.key"));
        rdubbo_tls::ClientTls::from_pem_files(
            self.path("ca.pem"),
            with_cert.then_some((c.as_path(), k.as_path())),
        )
        .unwrap()
    }

    pub fn client_trusting_other_ca(&self) -> rdubbo_tls::ClientTls {
        rdubbo_tls::ClientTls::from_pem_files(self.path("other-ca.pem"), None).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `tool` (openssl, curl) can be run; says so loudly when not.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "\n!!! SKIPPED: `{tool}` is not installed; this check against a real {tool} peer did not run \
             (scripts/test-all.sh installs it) !!!\n"
        );
    }
    ok
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
