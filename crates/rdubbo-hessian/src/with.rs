//! Java dates and decimals as the well-kept Rust crates spell them.
//!
//! With the `chrono` feature, [`Date`] converts to and from `chrono::DateTime<Utc>`, and a
//! field of that type is sent as a `java.util.Date` with
//! `#[serde(with = "rdubbo_hessian::with::chrono_date")]`. With the `bigdecimal` feature,
//! [`BigDecimal`] converts to and from `bigdecimal::BigDecimal` (arbitrary precision, as
//! Java's), and a field is sent as a `java.math.BigDecimal` with
//! `#[serde(with = "rdubbo_hessian::with::big_decimal")]`.
//!
//! ```
//! # #[cfg(all(feature = "chrono", feature = "bigdecimal"))] {
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! #[serde(rename = "com.example.Payment")]
//! struct Payment {
//!     #[serde(with = "rdubbo_hessian::with::chrono_date")]
//!     at: chrono::DateTime<chrono::Utc>,
//!     #[serde(with = "rdubbo_hessian::with::big_decimal")]
//!     amount: bigdecimal::BigDecimal,
//! }
//!
//! let p = Payment {
//!     at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
//!     amount: "1234.50".parse().unwrap(),
//! };
//! let bytes = rdubbo_hessian::to_bytes(&p).unwrap();
//! let v = rdubbo_hessian::decode_value(&bytes).unwrap();
//! let rdubbo_hessian::Value::Object(o) = v else { panic!() };
//! assert_eq!(o.field("at"), Some(&rdubbo_hessian::Value::Date(1_700_000_000_000)));
//! assert_eq!(rdubbo_hessian::from_slice::<Payment>(&bytes).unwrap(), p);
//! # }
//! ```

#[allow(unused_imports)]
use crate::types::{BigDecimal, Date};

#[cfg(feature = "chrono")]
mod chrono_impls {
    use super::Date;
    use chrono::{DateTime, Utc};

    impl From<DateTime<Utc>> for Date {
        fn from(d: DateTime<Utc>) -> Date {
            Date(d.timestamp_millis())
        }
    }

    impl Date {
        /// The date as a `chrono::DateTime<Utc>` (`None` outside chrono's range).
        pub fn to_chrono(self) -> Option<DateTime<Utc>> {
            DateTime::from_timestamp_millis(self.0)
        }
    }
}

/// `#[serde(with = "…::chrono_date")]` for a `chrono::DateTime<Utc>` field sent as a
/// `java.util.Date` (millisecond precision, as Java's).
#[cfg(feature = "chrono")]
pub mod chrono_date {
    use super::Date;
    use chrono::{DateTime, Utc};
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the date.
    pub fn serialize<S: Serializer>(d: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        Date::from(*d).serialize(s)
    }

    /// Reads the date.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let date = Date::deserialize(d)?;
        date.to_chrono()
            .ok_or_else(|| de::Error::custom(format!("date {} out of range", date.0)))
    }
}

#[cfg(feature = "bigdecimal")]
mod bigdecimal_impls {
    use super::BigDecimal;

    impl From<&bigdecimal::BigDecimal> for BigDecimal {
        fn from(d: &bigdecimal::BigDecimal) -> BigDecimal {
            BigDecimal::new(d.to_string())
        }
    }

    impl From<bigdecimal::BigDecimal> for BigDecimal {
        fn from(d: bigdecimal::BigDecimal) -> BigDecimal {
            BigDecimal::from(&d)
        }
    }

    impl TryFrom<&BigDecimal> for bigdecimal::BigDecimal {
        type Error = bigdecimal::ParseBigDecimalError;
        fn try_from(d: &BigDecimal) -> Result<bigdecimal::BigDecimal, Self::Error> {
            d.value.parse()
        }
    }
}

/// `#[serde(with = "…::big_decimal")]` for a `bigdecimal::BigDecimal` field sent as a
/// `java.math.BigDecimal`.
#[cfg(feature = "bigdecimal")]
pub mod big_decimal {
    use super::BigDecimal;
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the decimal.
    pub fn serialize<S: Serializer>(d: &bigdecimal::BigDecimal, s: S) -> Result<S::Ok, S::Error> {
        BigDecimal::from(d).serialize(s)
    }

    /// Reads the decimal.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<bigdecimal::BigDecimal, D::Error> {
        let text = BigDecimal::deserialize(d)?;
        bigdecimal::BigDecimal::try_from(&text)
            .map_err(|e| de::Error::custom(format!("BigDecimal {:?}: {e}", text.value)))
    }
}

#[cfg(all(test, feature = "chrono", feature = "bigdecimal"))]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_the_value() {
        let d = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        assert_eq!(Date::from(d), Date(1_700_000_000_123));
        assert_eq!(Date(1_700_000_000_123).to_chrono(), Some(d));
        let b: bigdecimal::BigDecimal = "1234.50".parse().unwrap();
        assert_eq!(BigDecimal::from(&b).value, "1234.50");
        let back = bigdecimal::BigDecimal::try_from(&BigDecimal::new("-0.000123")).unwrap();
        assert_eq!(back.to_string(), "-0.000123");
    }
}
