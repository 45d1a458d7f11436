//! Deserialization half of the serde bridge: `impl Deserialize for Value`, and `Value` as a
//! `Deserializer` for [`from_value`].
//!
//! # Deserializing a `Value`
//!
//! Any self-describing format works. Objects written by the `Serialize` impl (the
//! [JSON mapping](super::json)'s `{"$date": …}`, `{"$map": …}` and friends) are turned back
//! into their variants, so a `Value` inside a typed struct round-trips through serde_json
//! and through [`to_value`](super::to_value)/[`from_value`]. Nesting is limited to
//! [`Limits::DEFAULT`]'s depth.
//!
//! # `from_value`
//!
//! Presents a `Value` to a `Deserialize` type like `serde_json::from_value` does: integers
//! as `i64`/`u64`, `Bytes` as a byte buffer (so `Vec<u8>` fields accept both `Bytes` and a
//! list of integers), maps as maps or structs, lists as sequences or tuples, `None` as unit
//! or `Option::None`. Enums come from a string (unit variants) or a single-entry map
//! `{variant: content}`.
//!
//! Dates, times, date-times and durations are handed to types asking for a string (such as
//! `String` or a date type parsing ISO 8601) as their JSON-mapping text, e.g. `"2026-11-24"`.
//! To a type that asks for "anything" (`deserialize_any`, e.g. `Value` itself or
//! `serde_json::Value`) they appear as the JSON-mapping object `{"$date": "2026-11-24"}`,
//! exactly as a self-describing format would show them, so a `Value` field keeps them intact.

use std::collections::BTreeMap;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};
use serde::{Deserialize, forward_to_deserialize_any};

use super::json::{interpret, needs_map_wrapper};
use super::{Integer, Limits, Value, ValueError};

/// Converts a [`Value`] into any deserializable type; see the [module docs](self).
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ValueError> {
    T::deserialize(value)
}

/// Like [`from_value`], from a borrowed value (which is cloned).
pub fn from_value_ref<T: DeserializeOwned>(value: &Value) -> Result<T, ValueError> {
    T::deserialize(value.clone())
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Special forms are recognised after the whole tree is read, because whether a map
        // is a special form depends on it having exactly one entry.
        let raw = deserializer.deserialize_any(RawVisitor)?;
        interpret(raw, 0, Limits::DEFAULT.max_depth).map_err(de::Error::custom)
    }
}

/// Reads any serde data into a [`Value`] without interpreting special forms.
struct RawVisitor;

/// Upper bound on capacity reserved from a size hint, which may come from untrusted input.
const MAX_PREALLOC: usize = 4096;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any netsvc value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Integer::try_from(v).map(Value::Int).map_err(E::custom)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Integer::try_from(v).map(Value::Int).map_err(E::custom)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::None)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(item) = seq.next_element_seed(RawSeed)? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(RawSeed)?;
            map.insert(key, value);
        }
        Ok(Value::Map(map))
    }
}

struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

impl Value {
    fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Self::None => Unexpected::Unit,
            Self::Bool(b) => Unexpected::Bool(*b),
            Self::Int(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Unexpected::Unsigned(u),
                (None, Some(i)) => Unexpected::Signed(i),
                (None, None) => Unexpected::Other("integer"),
            },
            Self::Float(f) => Unexpected::Float(*f),
            Self::String(s) => Unexpected::Str(s),
            Self::Bytes(b) => Unexpected::Bytes(b),
            Self::List(_) => Unexpected::Seq,
            Self::Map(_) => Unexpected::Map,
            Self::Date(_) => Unexpected::Other("date"),
            Self::Time(_) => Unexpected::Other("time"),
            Self::DateTime(_) => Unexpected::Other("date-time"),
            Self::Duration(_) => Unexpected::Other("duration"),
            Self::Opaque(_) => Unexpected::Other("opaque value"),
        }
    }

    /// The text form of the date/time variants, which are offered as strings.
    fn text_form(&self) -> Option<String> {
        match self {
            Self::Date(d) => Some(d.to_string()),
            Self::Time(t) => Some(t.to_string()),
            Self::DateTime(dt) => Some(dt.to_string()),
            Self::Duration(d) => Some(d.to_string()),
            _ => None,
        }
    }
}

fn visit_list<'de, V: Visitor<'de>>(items: Vec<Value>, visitor: V) -> Result<V::Value, ValueError> {
    let mut access = SeqDeserializer::new(items.into_iter());
    let result = visitor.visit_seq(&mut access)?;
    access.end()?;
    Ok(result)
}

fn visit_plain_map<'de, V: Visitor<'de>>(
    map: BTreeMap<String, Value>,
    visitor: V,
) -> Result<V::Value, ValueError> {
    let mut access = MapDeserializer::new(map.into_iter().map(|(k, v)| (MapKey(k), v)));
    let result = visitor.visit_map(&mut access)?;
    access.end()?;
    Ok(result)
}

/// Visits `{key: inner}`, a special form of the JSON mapping.
fn visit_special<'de, V: Visitor<'de>, T: IntoDeserializer<'de, ValueError>>(
    key: &'static str,
    inner: T,
    visitor: V,
) -> Result<V::Value, ValueError> {
    let mut access = MapDeserializer::new(std::iter::once((key, inner)));
    let result = visitor.visit_map(&mut access)?;
    access.end()?;
    Ok(result)
}

impl<'de> Deserializer<'de> for Value {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        if let Some(text) = self.text_form() {
            let key = match self {
                Self::Date(_) => "$date",
                Self::Time(_) => "$time",
                Self::DateTime(_) => "$datetime",
                _ => "$duration",
            };
            return visit_special(key, Self::String(text), visitor);
        }
        match self {
            Self::None => visitor.visit_unit(),
            Self::Bool(b) => visitor.visit_bool(b),
            Self::Int(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => visitor.visit_u64(u),
                (None, Some(i)) => visitor.visit_i64(i),
                (None, None) => visitor.visit_i128(n.to_i128()),
            },
            Self::Float(f) => visitor.visit_f64(f),
            Self::String(s) => visitor.visit_string(s),
            Self::Bytes(b) => visitor.visit_byte_buf(b),
            Self::List(items) => visit_list(items, visitor),
            Self::Map(map) if needs_map_wrapper(&map) => {
                visit_special("$map", PlainMap(map), visitor)
            }
            Self::Map(map) => visit_plain_map(map, visitor),
            Self::Opaque(o) => {
                let mut body = BTreeMap::new();
                body.insert("type".to_owned(), Self::String(o.type_name));
                body.insert("data".to_owned(), Self::Bytes(o.data));
                visit_special("$opaque", PlainMap(body), visitor)
            }
            // Handled by text_form above.
            Self::Date(_) | Self::Time(_) | Self::DateTime(_) | Self::Duration(_) => {
                Err(de::Error::invalid_type(self.unexpected(), &visitor))
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Self::None => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Self::None => visitor.visit_unit(),
            other => Err(de::Error::invalid_type(other.unexpected(), &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.text_form() {
            Some(text) => visitor.visit_string(text),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            // A typed map or struct wants the entries themselves, never a `$map` wrapper.
            Self::Map(map) => visit_plain_map(map, visitor),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Self::String(variant) => visitor.visit_enum(variant.into_deserializer()),
            Self::Map(map) if map.len() == 1 => match map.into_iter().next() {
                Some((variant, value)) => visitor.visit_enum(EnumDeserializer { variant, value }),
                None => Err(de::Error::invalid_length(0, &"a map with a single entry")),
            },
            other => Err(de::Error::invalid_type(
                other.unexpected(),
                &"a string or a single-entry map naming an enum variant",
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_unit()
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            // A `Vec<u8>` field asks for a sequence; give it the bytes one by one.
            Self::Bytes(bytes) => {
                let mut access = SeqDeserializer::new(bytes.into_iter());
                let result = visitor.visit_seq(&mut access)?;
                access.end()?;
                Ok(result)
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_seq(visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf tuple_struct
    }
}

/// A map key. Keys are always strings, but like serde_json a key is parsed when the target
/// type asks for a number or boolean, so `BTreeMap<u32, _>` round-trips through
/// [`to_value`](super::to_value), which writes such keys as decimal strings.
struct MapKey(String);

macro_rules! parse_key {
    ($($method:ident => $visit:ident: $t:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
            match self.0.parse::<$t>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => visitor.visit_string(self.0),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for MapKey {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_string(self.0)
    }

    parse_key! {
        deserialize_bool => visit_bool: bool,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    forward_to_deserialize_any! {
        f32 f64 char str string bytes byte_buf option unit unit_struct seq tuple tuple_struct
        map struct identifier ignored_any
    }
}

impl IntoDeserializer<'_, ValueError> for MapKey {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl IntoDeserializer<'_, ValueError> for Value {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// A map presented as-is, even if it has a single `$` key (the inside of a `$map` form).
struct PlainMap(BTreeMap<String, Value>);

impl<'de> Deserializer<'de> for PlainMap {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visit_plain_map(self.0, visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl IntoDeserializer<'_, ValueError> for PlainMap {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// An enum given as `{variant: content}`.
struct EnumDeserializer {
    variant: String,
    value: Value,
}

impl<'de> EnumAccess<'de> for EnumDeserializer {
    type Error = ValueError;
    type Variant = VariantDeserializer;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, VariantDeserializer), ValueError> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, VariantDeserializer(self.value)))
    }
}

/// The content of an enum variant.
struct VariantDeserializer(Value);

impl<'de> VariantAccess<'de> for VariantDeserializer {
    type Error = ValueError;

    fn unit_variant(self) -> Result<(), ValueError> {
        match self.0 {
            Value::None => Ok(()),
            other => Err(de::Error::invalid_type(other.unexpected(), &"unit variant")),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, ValueError> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::List(items) => visit_list(items, visitor),
            other => Err(de::Error::invalid_type(
                other.unexpected(),
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::Map(map) => visit_plain_map(map, visitor),
            other => Err(de::Error::invalid_type(
                other.unexpected(),
                &"struct variant",
            )),
        }
    }
}
