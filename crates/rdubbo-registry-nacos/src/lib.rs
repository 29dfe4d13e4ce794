//! Nacos for rdubbo: a registry client over the Nacos Open API v1 ([`NacosRegistry`],
//! `nacos://host:8848?namespace=…&group=…`) and the Nacos naming model ([`model`]). The
//! embedded naming server that `rdubbo registry` and `rdubbo demo` run is the crate
//! `rdubbo-naming-server`.

mod api;
mod backend;
mod beat;
pub mod client;
pub mod model;
mod push;
mod subscribe;

pub use client::NacosRegistry;
