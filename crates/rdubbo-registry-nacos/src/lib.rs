//! Nacos for rdubbo: a registry client over the Nacos Open API v1 ([`NacosRegistry`],
//! `nacos://host:8848?namespace=…&group=…`) and an embedded, single-node Nacos-compatible
//! naming server ([`server::NamingServer`]) that `rdubbo registry` and `rdubbo demo` run.

pub mod client;
pub mod model;
pub mod server;

pub use client::NacosRegistry;
