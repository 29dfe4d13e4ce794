//! Nacos for rdubbo: a registry client over the Nacos Open API v1 ([`NacosRegistry`],
//! `nacos://host:8848?namespace=…&group=…`) with Dubbo's dynamic configuration on the
//! config API ([`NacosConfig`]) and Dubbo 3's application-level registration
//! ([`NacosServiceDiscovery`]), the Nacos naming model ([`model`]) and the config API's
//! wire format ([`config_wire`]). The
//! embedded naming server that `rdubbo registry` and `rdubbo demo` run is the crate
//! `rdubbo-naming-server`.

mod api;
mod backend;
mod beat;
pub mod client;
mod config_center;
pub mod config_wire;
mod discovery;
pub mod model;
mod push;
mod subscribe;

pub use client::{NacosConfig, NacosRegistry, NacosServiceDiscovery};
pub use config_center::MAX_WATCHED_KEYS;
