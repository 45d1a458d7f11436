//! The dynamic [`Value`] carried as message content: request arguments, responses and reports.
//!
//! A [`Value`] is a small, self-describing tree (like JSON) with a few extra leaf types the
//! original system needed: raw bytes, dates, times, date-times, durations and an
//! [`Opaque`] escape for application-defined types. It has three representations:
//!
//! - [`msgpack`]: the compact binary encoding used on the wire ([`encode`], [`decode`]).
//! - [`json`]: the documented JSON mapping used by the CLI and the HTTP gateway
//!   ([`to_json`](json::to_json), [`from_json`](json::from_json)).
//! - the serde bridge ([`ser`], [`de`]): [`Value`] implements `Serialize`/`Deserialize`, and
//!   [`to_value`] / [`from_value`] convert between typed structs and values.
//!
//! Every decoder is bounded by [`Limits`] (nesting depth and input size) so hostile input
//! cannot exhaust the stack or memory.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

mod datetime;
pub mod de;
pub mod json;
pub mod msgpack;
pub mod ser;

#[cfg(test)]
mod tests;

pub use datetime::{Date, DateTime, Duration, Time};
pub use de::{from_value, from_value_ref};
pub use msgpack::{decode, encode, encode_into};
pub use ser::to_value;

/// A dynamically typed message value.
///
/// Equality is structural; like `f64`, a `Float(NaN)` is not equal to itself. Maps are ordered
/// by key, so two maps with the same entries are equal and encode to the same bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// The absence of a value (`nil` in MessagePack, `null` in JSON).
    #[default]
    None,
    /// A boolean.
    Bool(bool),
    /// An integer anywhere in `i64::MIN..=u64::MAX`.
    Int(Integer),
    /// A 64-bit float. Round-trips bit-exactly through MessagePack (including NaN payloads).
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An ordered list of values.
    List(Vec<Self>),
    /// A map from string keys to values, ordered by key.
    Map(BTreeMap<String, Self>),
    /// A calendar date.
    Date(Date),
    /// A time of day.
    Time(Time),
    /// A date and time, with or without a UTC offset.
    DateTime(DateTime),
    /// A signed span of time.
    Duration(Duration),
    /// An application-defined value this crate does not interpret.
    Opaque(Opaque),
}

/// An application-defined value: a type name and the bytes of its own encoding.
///
/// This is the escape hatch for types netsvc does not know. MessagePack extension types other
/// than the ones netsvc uses decode to an `Opaque` named `msgpack.ext.<n>` and encode back to
/// extension type `n`, so unknown extensions survive a round trip.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Opaque {
    /// The application's name for the type, e.g. `"my:point"`. At most 65535 bytes when
    /// encoded as MessagePack.
    pub type_name: String,
    /// The value's bytes, in whatever encoding the type's owner chose.
    pub data: Vec<u8>,
}

impl Opaque {
    /// Creates an opaque value.
    pub fn new(type_name: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            type_name: type_name.into(),
            data: data.into(),
        }
    }
}

/// An integer in the range `i64::MIN..=u64::MAX`.
///
/// MessagePack and JSON both carry the full signed and unsigned 64-bit ranges, so a value
/// must too; neither `i64` nor `u64` alone covers them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Integer(Repr);

/// Canonical representation: `Neg` only ever holds negative numbers, so the derived
/// equality, ordering and hashing are numeric (every `Neg` sorts before every `Pos`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Repr {
    Neg(i64),
    Pos(u64),
}

impl Integer {
    /// The smallest representable integer, `i64::MIN`.
    pub const MIN: Self = Self(Repr::Neg(i64::MIN));
    /// The largest representable integer, `u64::MAX`.
    pub const MAX: Self = Self(Repr::Pos(u64::MAX));

    /// The value as an `i64`, if it fits.
    pub fn as_i64(self) -> Option<i64> {
        match self.0 {
            Repr::Neg(n) => Some(n),
            Repr::Pos(n) => i64::try_from(n).ok(),
        }
    }

    /// The value as a `u64`, if it is not negative.
    pub fn as_u64(self) -> Option<u64> {
        match self.0 {
            Repr::Neg(_) => None,
            Repr::Pos(n) => Some(n),
        }
    }

    /// The value as an `i128`, which always fits.
    pub fn to_i128(self) -> i128 {
        match self.0 {
            Repr::Neg(n) => i128::from(n),
            Repr::Pos(n) => i128::from(n),
        }
    }

    /// The value converted to the nearest `f64` (large magnitudes lose precision).
    #[allow(clippy::cast_precision_loss)] // documented: nearest float
    pub fn to_f64(self) -> f64 {
        match self.0 {
            Repr::Neg(n) => n as f64,
            Repr::Pos(n) => n as f64,
        }
    }

    /// Whether the value is below zero.
    pub fn is_negative(self) -> bool {
        matches!(self.0, Repr::Neg(_))
    }
}

impl fmt::Debug for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Integer({self})")
    }
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::Neg(n) => fmt::Display::fmt(&n, f),
            Repr::Pos(n) => fmt::Display::fmt(&n, f),
        }
    }
}

impl From<i64> for Integer {
    fn from(n: i64) -> Self {
        match u64::try_from(n) {
            Ok(n) => Self(Repr::Pos(n)),
            Err(_) => Self(Repr::Neg(n)),
        }
    }
}

impl From<u64> for Integer {
    fn from(n: u64) -> Self {
        Self(Repr::Pos(n))
    }
}

macro_rules! integer_from {
    ($via:ty: $($t:ty),*) => {$(
        impl From<$t> for Integer {
            fn from(n: $t) -> Self {
                Self::from(<$via>::from(n))
            }
        }
    )*};
}
integer_from!(i64: i8, i16, i32);
integer_from!(u64: u8, u16, u32);

impl From<isize> for Integer {
    fn from(n: isize) -> Self {
        // isize is at most 64 bits on every platform Rust supports.
        Self::from(n as i64)
    }
}

impl From<usize> for Integer {
    fn from(n: usize) -> Self {
        // usize is at most 64 bits on every platform Rust supports.
        Self::from(n as u64)
    }
}

impl TryFrom<i128> for Integer {
    type Error = ValueError;

    fn try_from(n: i128) -> Result<Self, ValueError> {
        if let Ok(n) = u64::try_from(n) {
            Ok(Self(Repr::Pos(n)))
        } else if let Ok(n) = i64::try_from(n) {
            Ok(Self(Repr::Neg(n)))
        } else {
            Err(ValueError::IntegerOutOfRange(n.to_string()))
        }
    }
}

impl TryFrom<u128> for Integer {
    type Error = ValueError;

    fn try_from(n: u128) -> Result<Self, ValueError> {
        u64::try_from(n)
            .map(Self::from)
            .map_err(|_| ValueError::IntegerOutOfRange(n.to_string()))
    }
}

impl From<Integer> for i128 {
    fn from(n: Integer) -> Self {
        n.to_i128()
    }
}

/// Bounds applied when decoding (and encoding) values, so hostile input cannot exhaust the
/// stack or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest allowed nesting of lists and maps. A scalar is at depth 0, the elements of a
    /// top-level list at depth 1; a list nested `max_depth` times is accepted, one more level
    /// is [`ValueError::TooDeep`].
    pub max_depth: usize,
    /// Largest encoded size in bytes: longer input is rejected before decoding starts, and
    /// encoding stops once the output would grow past it.
    pub max_size: usize,
}

impl Limits {
    /// 64 levels of nesting, 16 MiB.
    pub const DEFAULT: Self = Self {
        max_depth: 64,
        max_size: 16 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a value could not be encoded, decoded or converted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Lists and maps are nested deeper than [`Limits::max_depth`].
    #[error("value nested deeper than the limit of {limit} levels")]
    TooDeep {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The encoded value is larger than [`Limits::max_size`]. When encoding, `size` is how far
    /// the output had grown when the limit was hit, not the full size.
    #[error("encoded value of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The (partial, when encoding) size in bytes.
        size: usize,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The input ended in the middle of a value.
    #[error("input ended in the middle of a value")]
    Truncated,
    /// The input holds more bytes after one complete value.
    #[error("{extra} unexpected bytes after the end of the value")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
    /// A string is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A date, time, date-time or duration is out of range or malformed.
    #[error("invalid date/time: {0}")]
    InvalidDate(String),
    /// An integer lies outside `i64::MIN..=u64::MAX`.
    #[error("integer {0} is outside the supported range i64::MIN..=u64::MAX")]
    IntegerOutOfRange(String),
    /// The input uses something this crate cannot represent, e.g. a non-string map key.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// JSON text or a JSON-mapped value is malformed.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A serde `Serialize` or `Deserialize` implementation reported an error.
    #[error("{0}")]
    Serde(String),
}

impl serde::ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Serde(msg.to_string())
    }
}

impl serde::de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Serde(msg.to_string())
    }
}

impl Value {
    /// A [`Value::Bytes`]. (`Vec<u8>` converts into a list of integers via `From`, like every
    /// other `Vec`, so bytes need this explicit constructor.)
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self::Bytes(bytes.into())
    }

    /// The name of the variant: `"none"`, `"bool"`, `"int"`, `"float"`, `"string"`,
    /// `"bytes"`, `"list"`, `"map"`, `"date"`, `"time"`, `"datetime"`, `"duration"` or
    /// `"opaque"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::String(_) => "string",
            Self::Bytes(_) => "bytes",
            Self::List(_) => "list",
            Self::Map(_) => "map",
            Self::Date(_) => "date",
            Self::Time(_) => "time",
            Self::DateTime(_) => "datetime",
            Self::Duration(_) => "duration",
            Self::Opaque(_) => "opaque",
        }
    }

    /// Whether this is [`Value::None`].
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`].
    pub fn as_int(&self) -> Option<Integer> {
        match self {
            Self::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`] that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_int().and_then(Integer::as_i64)
    }

    /// The integer, if this is a [`Value::Int`] that fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_int().and_then(Integer::as_u64)
    }

    /// The number as a float, if this is a [`Value::Float`] or a [`Value::Int`] (converted to
    /// the nearest `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Float(f) => Some(*f),
            Self::Int(n) => Some(n.to_f64()),
            _ => None,
        }
    }

    /// The string, if this is a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is a [`Value::List`].
    pub fn as_list(&self) -> Option<&[Self]> {
        match self {
            Self::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entries, if this is a [`Value::Map`].
    pub fn as_map(&self) -> Option<&BTreeMap<String, Self>> {
        match self {
            Self::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The date, if this is a [`Value::Date`].
    pub fn as_date(&self) -> Option<Date> {
        match self {
            Self::Date(d) => Some(*d),
            _ => None,
        }
    }

    /// The time, if this is a [`Value::Time`].
    pub fn as_time(&self) -> Option<Time> {
        match self {
            Self::Time(t) => Some(*t),
            _ => None,
        }
    }

    /// The date-time, if this is a [`Value::DateTime`].
    pub fn as_datetime(&self) -> Option<DateTime> {
        match self {
            Self::DateTime(dt) => Some(*dt),
            _ => None,
        }
    }

    /// The duration, if this is a [`Value::Duration`].
    pub fn as_duration(&self) -> Option<Duration> {
        match self {
            Self::Duration(d) => Some(*d),
            _ => None,
        }
    }

    /// The opaque value, if this is a [`Value::Opaque`].
    pub fn as_opaque(&self) -> Option<&Opaque> {
        match self {
            Self::Opaque(o) => Some(o),
            _ => None,
        }
    }

    /// Encodes the value as MessagePack with [`Limits::DEFAULT`].
    pub fn to_msgpack(&self) -> Result<Vec<u8>, ValueError> {
        encode(self, &Limits::DEFAULT)
    }

    /// Decodes one MessagePack value with [`Limits::DEFAULT`].
    pub fn from_msgpack(bytes: &[u8]) -> Result<Self, ValueError> {
        decode(bytes, &Limits::DEFAULT)
    }

    /// Renders the value as compact JSON text using the [JSON mapping](json).
    pub fn to_json_string(&self) -> String {
        json::to_json(self).to_string()
    }

    /// Parses JSON text and converts it using the [JSON mapping](json), with
    /// [`Limits::DEFAULT`].
    pub fn from_json_str(s: &str) -> Result<Self, ValueError> {
        json::from_json_str_with_limits(s, &Limits::DEFAULT)
    }
}

/// Compact JSON text, as produced by [`Value::to_json_string`].
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&json::to_json(self), f)
    }
}

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Self::Int(Integer::from(n))
            }
        }
    )*};
}
value_from_int!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

macro_rules! value_from_variant {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Self::$variant(v)
            }
        }
    )*};
}
value_from_variant!(
    bool => Bool,
    Integer => Int,
    f64 => Float,
    String => String,
    Date => Date,
    Time => Time,
    DateTime => DateTime,
    Duration => Duration,
    Opaque => Opaque
);

impl From<f32> for Value {
    fn from(f: f32) -> Self {
        Self::Float(f64::from(f))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<std::time::Duration> for Value {
    fn from(d: std::time::Duration) -> Self {
        Self::Duration(d.into())
    }
}

/// A list; note that `Vec<u8>` becomes a list of integers — use [`Value::bytes`] for bytes.
impl<T: Into<Self>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Self::List(items.into_iter().map(Into::into).collect())
    }
}

impl<V: Into<Self>> From<BTreeMap<String, V>> for Value {
    fn from(map: BTreeMap<String, V>) -> Self {
        Self::Map(map.into_iter().map(|(k, v)| (k, v.into())).collect())
    }
}

/// `None` becomes [`Value::None`], `Some(v)` becomes `v`'s value.
impl<T: Into<Self>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::None, Into::into)
    }
}

impl<T: Into<Self>> FromIterator<T> for Value {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self::List(iter.into_iter().map(Into::into).collect())
    }
}
