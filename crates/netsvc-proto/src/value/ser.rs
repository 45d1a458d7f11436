//! Serialization half of the serde bridge: `impl Serialize for Value` and [`to_value`].
//!
//! # How a `Value` serializes
//!
//! The JSON-compatible variants map onto the serde data model directly (`None` is a unit,
//! `List` a sequence, `Map` a map, and so on). The rest are written as the single-key
//! objects of the [JSON mapping](super::json), so a `Value` inside a typed struct serializes
//! with `serde_json` to exactly what [`to_json`](super::json::to_json) produces:
//!
//! - `Date`, `Time`, `DateTime`, `Duration`: `{"$date": "2026-11-24"}` etc.
//! - `Opaque`: `{"$opaque": {"type": …, "data": …}}`
//! - a `Map` with one `$` key: `{"$map": {…}}`
//! - `Bytes` and non-finite `Float`s: `{"$bytes": "<base64>"}` and `{"$float": "NaN"}` for
//!   human-readable formats; compact formats get native bytes and floats instead (and
//!   `"data"` of an opaque value is native bytes too).
//!
//! Those objects are wrapped in a newtype struct with a private marker name. Every format
//! treats it as transparent except [`to_value`], which recognises it and rebuilds the
//! original variant, so `to_value(&v) == Ok(v)` for every value (bit-exact, NaNs included).
//!
//! # `to_value`
//!
//! Converts any `Serialize` type like `serde_json::to_value` does: structs become maps keyed
//! by field name; sequences, tuples and tuple structs lists; unit and `Option::None`
//! `Value::None`; newtype structs are transparent; a unit enum variant becomes its name as a
//! string and other variants a single-entry map `{variant: content}`; serialized bytes become
//! `Value::Bytes`, while a plain `Vec<u8>` is a sequence and becomes a list of integers; a
//! `char` becomes a string; 128-bit integers must fit `i64::MIN..=u64::MAX`. Map keys must be
//! strings, chars, booleans, integers (written as decimal strings like serde_json does) or
//! unit variants. The serializer reports itself as human-readable.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{self, Impossible, Serialize, SerializeMap as _, Serializer};

use super::json::{Nested, needs_map_wrapper, special_form};
use super::{Integer, Opaque, Value, ValueError};

/// Name of the newtype struct wrapping special forms; the NUL keeps it from clashing with a
/// real type name.
pub(super) const MARKER: &str = "\0netsvc::value::special";

/// Converts any serializable type to a [`Value`]; see the [module docs](self) for the
/// mapping.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ValueSerializer {
        human_readable: true,
    })
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::None => serializer.serialize_unit(),
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::Int(n) => match n.as_u64() {
                Some(n) => serializer.serialize_u64(n),
                None => serializer.serialize_i64(n.as_i64().unwrap_or(i64::MIN)),
            },
            Self::Float(f) if f.is_finite() || !serializer.is_human_readable() => {
                serializer.serialize_f64(*f)
            }
            Self::Float(f) => serializer.serialize_newtype_struct(MARKER, &Special::Float(*f)),
            Self::String(s) => serializer.serialize_str(s),
            Self::Bytes(b) if !serializer.is_human_readable() => serializer.serialize_bytes(b),
            Self::Bytes(b) => serializer.serialize_newtype_struct(MARKER, &Special::Bytes(b)),
            Self::List(items) => serializer.collect_seq(items),
            Self::Map(map) if needs_map_wrapper(map) => {
                serializer.serialize_newtype_struct(MARKER, &Special::Map(map))
            }
            Self::Map(map) => serializer.collect_map(map),
            Self::Date(d) => {
                serializer.serialize_newtype_struct(MARKER, &Special::Text("$date", d.to_string()))
            }
            Self::Time(t) => {
                serializer.serialize_newtype_struct(MARKER, &Special::Text("$time", t.to_string()))
            }
            Self::DateTime(dt) => serializer
                .serialize_newtype_struct(MARKER, &Special::Text("$datetime", dt.to_string())),
            Self::Duration(d) => serializer
                .serialize_newtype_struct(MARKER, &Special::Text("$duration", d.to_string())),
            Self::Opaque(o) => serializer.serialize_newtype_struct(MARKER, &Special::Opaque(o)),
        }
    }
}

/// The single-key object standing for a variant serde has no native form for.
enum Special<'a> {
    Float(f64),
    Bytes(&'a [u8]),
    Map(&'a BTreeMap<String, Value>),
    Text(&'static str, String),
    Opaque(&'a Opaque),
}

impl Serialize for Special<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let human_readable = serializer.is_human_readable();
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Self::Float(f) if human_readable => {
                let name = if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                map.serialize_entry("$float", name)?;
            }
            Self::Float(f) => map.serialize_entry("$float", f)?,
            Self::Bytes(b) => map.serialize_entry("$bytes", &Bytes(b))?,
            Self::Map(m) => map.serialize_entry("$map", m)?,
            Self::Text(key, text) => map.serialize_entry(key, text)?,
            Self::Opaque(o) => map.serialize_entry("$opaque", &OpaqueBody(o))?,
        }
        map.end()
    }
}

/// Bytes as base64 text for human-readable formats, native bytes otherwise.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&BASE64.encode(self.0))
        } else {
            serializer.serialize_bytes(self.0)
        }
    }
}

struct OpaqueBody<'a>(&'a Opaque);

impl Serialize for OpaqueBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", &self.0.type_name)?;
        map.serialize_entry("data", &Bytes(&self.0.data))?;
        map.end()
    }
}

/// Rebuilds the variant behind a marker-wrapped special form.
fn from_special(form: Value) -> Result<Value, ValueError> {
    match form {
        Value::Map(map) if map.len() == 1 => {
            let Some((key, inner)) = map.into_iter().next() else {
                return Err(ValueError::Serde("empty special form".to_owned()));
            };
            special_form(&key, inner, Nested::AsIs, 0, usize::MAX)
        }
        other => Err(ValueError::Serde(format!(
            "a special form must be a single-entry map, not {}",
            other.type_name()
        ))),
    }
}

/// Builds a [`Value`] from any `Serialize` type.
#[derive(Debug, Clone, Copy)]
struct ValueSerializer {
    human_readable: bool,
}

/// Upper bound on capacity reserved from a size hint; the hint comes from `Serialize` code,
/// which may be wrong.
const MAX_PREALLOC: usize = 4096;

impl Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = ListBuilder;
    type SerializeTuple = ListBuilder;
    type SerializeTupleStruct = ListBuilder;
    type SerializeTupleVariant = VariantListBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = VariantMapBuilder;

    fn is_human_readable(&self) -> bool {
        self.human_readable
    }

    fn serialize_bool(self, v: bool) -> Result<Value, ValueError> {
        Ok(Value::Bool(v))
    }

    fn serialize_i8(self, v: i8) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_i16(self, v: i16) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_i32(self, v: i32) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_i64(self, v: i64) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_i128(self, v: i128) -> Result<Value, ValueError> {
        Integer::try_from(v).map(Value::Int)
    }

    fn serialize_u8(self, v: u8) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_u16(self, v: u16) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_u32(self, v: u32) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_u64(self, v: u64) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_u128(self, v: u128) -> Result<Value, ValueError> {
        Integer::try_from(v).map(Value::Int)
    }

    fn serialize_f32(self, v: f32) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<Value, ValueError> {
        Ok(Value::Float(v))
    }

    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        Ok(Value::String(v.to_string()))
    }

    fn serialize_str(self, v: &str) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::Bytes(v.to_vec()))
    }

    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::None)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ValueError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::None)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ValueError> {
        Ok(Value::None)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(Value::from(variant))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        if name == MARKER {
            // Compact mode makes the form carry native bytes and floats, so nothing is lost.
            let form = value.serialize(Self {
                human_readable: false,
            })?;
            from_special(form)
        } else {
            value.serialize(self)
        }
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        let mut map = BTreeMap::new();
        map.insert(variant.to_owned(), value.serialize(self)?);
        Ok(Value::Map(map))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<ListBuilder, ValueError> {
        Ok(ListBuilder {
            ser: self,
            items: Vec::with_capacity(len.unwrap_or(0).min(MAX_PREALLOC)),
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<ListBuilder, ValueError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<ListBuilder, ValueError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantListBuilder, ValueError> {
        Ok(VariantListBuilder {
            variant,
            list: self.serialize_seq(Some(len))?,
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder, ValueError> {
        Ok(MapBuilder {
            ser: self,
            map: BTreeMap::new(),
            next_key: None,
        })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapBuilder, ValueError> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantMapBuilder, ValueError> {
        Ok(VariantMapBuilder {
            variant,
            map: self.serialize_map(Some(len))?,
        })
    }
}

/// Collects sequences, tuples and tuple structs into a [`Value::List`].
#[derive(Debug)]
struct ListBuilder {
    ser: ValueSerializer,
    items: Vec<Value>,
}

impl ListBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.items.push(value.serialize(self.ser)?);
        Ok(())
    }
}

impl ser::SerializeSeq for ListBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTuple for ListBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTupleStruct for ListBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::List(self.items))
    }
}

/// Collects a tuple variant into `{variant: [fields…]}`.
#[derive(Debug)]
struct VariantListBuilder {
    variant: &'static str,
    list: ListBuilder,
}

impl ser::SerializeTupleVariant for VariantListBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.list.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(single_entry(self.variant, Value::List(self.list.items)))
    }
}

fn single_entry(key: &str, value: Value) -> Value {
    let mut map = BTreeMap::new();
    map.insert(key.to_owned(), value);
    Value::Map(map)
}

/// Collects maps and structs into a [`Value::Map`].
#[derive(Debug)]
struct MapBuilder {
    ser: ValueSerializer,
    map: BTreeMap<String, Value>,
    next_key: Option<String>,
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        self.next_key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        let key = self.next_key.take().ok_or_else(|| {
            ValueError::Serde("serialize_value called before serialize_key".to_owned())
        })?;
        self.map.insert(key, value.serialize(self.ser)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Map(self.map))
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ValueError> {
        self.map.insert(key.to_owned(), value.serialize(self.ser)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Map(self.map))
    }
}

/// Collects a struct variant into `{variant: {fields…}}`.
#[derive(Debug)]
struct VariantMapBuilder {
    variant: &'static str,
    map: MapBuilder,
}

impl ser::SerializeStructVariant for VariantMapBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ValueError> {
        ser::SerializeStruct::serialize_field(&mut self.map, key, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(single_entry(self.variant, Value::Map(self.map.map)))
    }
}

/// Turns a map key into a string, the way serde_json does.
#[derive(Debug, Clone, Copy)]
struct KeySerializer;

fn key_error(found: &str) -> ValueError {
    ValueError::Serde(format!(
        "map keys must be strings, chars, booleans or integers, found {found}"
    ))
}

impl Serializer for KeySerializer {
    type Ok = String;
    type Error = ValueError;
    type SerializeSeq = Impossible<String, ValueError>;
    type SerializeTuple = Impossible<String, ValueError>;
    type SerializeTupleStruct = Impossible<String, ValueError>;
    type SerializeTupleVariant = Impossible<String, ValueError>;
    type SerializeMap = Impossible<String, ValueError>;
    type SerializeStruct = Impossible<String, ValueError>;
    type SerializeStructVariant = Impossible<String, ValueError>;

    fn serialize_bool(self, v: bool) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i8(self, v: i8) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i16(self, v: i16) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i32(self, v: i32) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i64(self, v: i64) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i128(self, v: i128) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u8(self, v: u8) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u16(self, v: u16) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u32(self, v: u32) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u64(self, v: u64) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u128(self, v: u128) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_f32(self, _v: f32) -> Result<String, ValueError> {
        Err(key_error("a float"))
    }

    fn serialize_f64(self, _v: f64) -> Result<String, ValueError> {
        Err(key_error("a float"))
    }

    fn serialize_char(self, v: char) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_str(self, v: &str) -> Result<String, ValueError> {
        Ok(v.to_owned())
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<String, ValueError> {
        Err(key_error("bytes"))
    }

    fn serialize_none(self) -> Result<String, ValueError> {
        Err(key_error("None"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, ValueError> {
        Err(key_error("an Option"))
    }

    fn serialize_unit(self) -> Result<String, ValueError> {
        Err(key_error("a unit"))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, ValueError> {
        Err(key_error("a unit struct"))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, ValueError> {
        Ok(variant.to_owned())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, ValueError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, ValueError> {
        Err(key_error("an enum variant with data"))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, ValueError> {
        Err(key_error("a sequence"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, ValueError> {
        Err(key_error("a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, ValueError> {
        Err(key_error("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, ValueError> {
        Err(key_error("an enum variant with data"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, ValueError> {
        Err(key_error("a map"))
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, ValueError> {
        Err(key_error("a struct"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, ValueError> {
        Err(key_error("an enum variant with data"))
    }
}
