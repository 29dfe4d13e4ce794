//! A fixed CA and a server certificate for 127.0.0.1 (P-256, valid 100 years), made once with
//! the openssl CLI, for the `dubbo-tls` and `jsonrpc-tls` kinds: test material, not a secret.

/// The CA the clients trust.
pub(crate) const CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBoDCCAUegAwIBAgIUGJXTZtqynD/kqr0BHnRvmHprQ4EwCgYIKoZIzj0EAwIw\n\
HTEbMBkGA1UEAwwSdHJhbnNwb3J0LWJlbmNoIENBMCAXDTI2MTIwMzA4NTQyNloY\n\
DzIxMjYxMTA5MDg1NDI2WjAdMRswGQYDVQQDDBJ0cmFuc3BvcnQtYmVuY2ggQ0Ew\n\
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT4mFE/iYR/XyqV8Isaz4ZBgdyK+e2P\n\
iaqLrAiVs0tQZVajjQWB4ajmbA9JboFWSXTRNHoFbsxc813+XsKQMwXro2MwYTAd\n\
BgNVHQ4EFgQUyBY9dAhBc1WaR+jBR1BPzoztog4wHwYDVR0jBBgwFoAUyBY9dAhB\n\
c1WaR+jBR1BPzoztog4wDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYw\n\
CgYIKoZIzj0EAwIDRwAwRAIgPtMQO5rXEOvpym0yIX5fSIEui5UgTWOa0W4PMynN\n\
bBsCIDq15TB/txzxtKbw4jmr75WGvKUCDOb2Ev0r1tGixxBJ\n\
-----END CERTIFICATE-----\n";

/// The server certificate (signed by [`CA`]).
pub(crate) const SERVER_CERT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBtDCCAVmgAwIBAgIUVnZZU5dmjRiSYtS4qqMsiZSgNkowCgYIKoZIzj0EAwIw\n\
HTEbMBkGA1UEAwwSdHJhbnNwb3J0LWJlbmNoIENBMCAXDTI2MTIwMzA4NTQyN1oY\n\
DzIxMjYxMTA5MDg1NDI3WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjO\n\
PQIBBggqhkjOPQMBBwNCAASxggj754f0boXvTxIWyygO6baMtZhdZFk/c2miUjn7\n\
KL2gpkEGo2/1OEy5spFAIpbxKguGYnNwGKR3DfM1F8+Zo34wfDAaBgNVHREEEzAR\n\
hwR/AAABgglsb2NhbGhvc3QwEwYDVR0lBAwwCgYIKwYBBQUHAwEwCQYDVR0TBAIw\n\
ADAdBgNVHQ4EFgQUwH2csVHfPgDE7BInFgP9WKzJPG0wHwYDVR0jBBgwFoAUyBY9\n\
dAhBc1WaR+jBR1BPzoztog4wCgYIKoZIzj0EAwIDSQAwRgIhANN95UYrbNKoSlJT\n\
fEjSkktP1PsxoTGTSUeBuUtMYymhAiEA8y/UY00GT9GUgb3fLb+vvIm18J8ysRKJ\n\
ZCgdDRK8xao=\n\
-----END CERTIFICATE-----\n";

/// Its private key (PKCS#8).
pub(crate) const SERVER_KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGK3XcOIUsR9LhwhL\n\
3seEBHTHOTOYx3+xa9WDhlfDGEuhRANCAASxggj754f0boXvTxIWyygO6baMtZhd\n\
ZFk/c2miUjn7KL2gpkEGo2/1OEy5spFAIpbxKguGYnNwGKR3DfM1F8+Z\n\
-----END PRIVATE KEY-----\n";
