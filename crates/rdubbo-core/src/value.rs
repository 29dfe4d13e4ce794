//! The Java value model every call can carry losslessly: Hessian2's values (see
//! [`rdubbo_hessian::Value`]), with the Java types Dubbo sends that have a fixed form.

pub use rdubbo_hessian::{BigDecimal, Bytes, Date, List, Map, Object, Throwable, Value};
