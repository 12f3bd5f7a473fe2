//! Tolerant JSON readers every wire format shares: a string borrowed from the event text when
//! it has no escapes (`Text`), whole numbers that may come as integers, floats, numeric
//! strings or null (`Lenient`), prices likewise (`LenientF64`), and codes that may be strings
//! or numbers (`StrOrNum`). Relays re-serialize what they pass on; these read what they send.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A string borrowed from the event text when it has no escapes.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// A whole number that may come as an integer, a float, a numeric string or null (0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lenient(pub u64);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(u64::try_from(v).unwrap_or(0)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
                // `as` saturates: negative and NaN become 0.
                Ok(Lenient(v.round() as u64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(v.trim().parse().unwrap_or(0)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number that may come as a float, an integer, a numeric string or null.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LenientF64(pub Option<f64>);

impl<'de> Deserialize<'de> for LenientF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientF64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cost")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientF64, E> {
                Ok(LenientF64(Some(v as f64)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientF64, E> {
                Ok(LenientF64(Some(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientF64, E> {
                Ok(LenientF64(Some(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientF64, E> {
                Ok(LenientF64(v.trim().parse().ok()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientF64, E> {
                Ok(LenientF64(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string, or a number read as its text (error codes some relays send as numbers).
pub struct StrOrNum<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for StrOrNum<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrNum<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<StrOrNum<'de>, E> {
                Ok(StrOrNum(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrNum<'de>, E> {
                Ok(StrOrNum(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StrOrNum<'de>, E> {
                Ok(StrOrNum(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrOrNum<'de>, E> {
                Ok(StrOrNum(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrOrNum<'de>, E> {
                Ok(StrOrNum(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrOrNum<'de>, E> {
                Ok(StrOrNum(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}
