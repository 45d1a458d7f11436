//! The binary encoding of [`Value`]: MessagePack, with extension types for the date/time
//! types and [`Opaque`].
//!
//! | Value | MessagePack |
//! |---|---|
//! | `None` | nil |
//! | `Bool` | true / false |
//! | `Int` | smallest int form: non-negative → positive fixint / uint 8–64, negative → negative fixint / int 8–64 (decoding accepts any int form) |
//! | `Float` | float 64, always (decoding also accepts float 32) |
//! | `String` | str |
//! | `Bytes` | bin |
//! | `List` | array |
//! | `Map` | map with str keys (any other key type is rejected when decoding) |
//! | `Date` | ext 1: year `i32` BE, month `u8`, day `u8` (6 bytes) |
//! | `Time` | ext 2: hour `u8`, minute `u8`, second `u8`, nanosecond `u32` BE (7 bytes) |
//! | `DateTime` | ext 3: date (6 bytes), time (7 bytes), then the UTC offset in seconds as `i32` BE if there is one (13 or 17 bytes) |
//! | `Duration` | ext 4: seconds `i64` BE, nanoseconds `i32` BE (12 bytes) |
//! | `Opaque` | ext 5: type-name length `u16` BE, type name (UTF-8), data |
//! | `Opaque` named `msgpack.ext.<n>` | ext `n` with the data as payload, for `n` other than -1 and 1–5 |
//!
//! Decoding also accepts the standard timestamp extension (type -1, in its 4, 8 and 12 byte
//! forms) as a UTC [`DateTime`], and turns every other extension type `n` into an
//! [`Opaque`] named `msgpack.ext.<n>` that encodes back to the same bytes.
//!
//! Map keys must be unique; a map with a repeated key is rejected rather than letting one
//! reader keep the first and another the last entry.

use std::collections::BTreeMap;

use super::{Date, DateTime, Duration, Integer, Limits, Opaque, Time, Value, ValueError};

const EXT_DATE: i8 = 1;
const EXT_TIME: i8 = 2;
const EXT_DATETIME: i8 = 3;
const EXT_DURATION: i8 = 4;
const EXT_OPAQUE: i8 = 5;
const EXT_TIMESTAMP: i8 = -1;

/// Most list elements reserved before any has been decoded.
const MAX_PREALLOC: usize = 1024;

/// The `type_name` prefix of [`Opaque`] values standing for unknown extension types.
const FOREIGN_EXT_PREFIX: &str = "msgpack.ext.";

/// Encodes `value` as MessagePack.
///
/// Fails with [`ValueError::TooDeep`] if lists and maps nest deeper than
/// `limits.max_depth`, with [`ValueError::TooLarge`] as soon as the output would exceed
/// `limits.max_size`, and with [`ValueError::Unsupported`] for an [`Opaque`] type name longer
/// than 65535 bytes or a string, byte string or collection longer than `u32::MAX`.
pub fn encode(value: &Value, limits: &Limits) -> Result<Vec<u8>, ValueError> {
    let mut out = Vec::new();
    encode_into(value, &mut out, limits)?;
    Ok(out)
}

/// Appends the MessagePack encoding of `value` to `out`; see [`encode`].
///
/// `limits.max_size` applies to the bytes appended, not to what `out` already held. On error,
/// `out` is truncated back to its original length.
pub fn encode_into(value: &Value, out: &mut Vec<u8>, limits: &Limits) -> Result<(), ValueError> {
    let start = out.len();
    let mut encoder = Encoder { out, start, limits };
    let result = encoder.value(value, 0);
    if result.is_err() {
        encoder.out.truncate(start);
    }
    result
}

/// Decodes exactly one MessagePack value from `bytes`.
///
/// Never panics, whatever the input, and memory use stays proportional to the input size
/// (each decoded element costs one `Value`, a few dozen bytes): input longer than
/// `limits.max_size` is rejected up front, nesting is checked before descending, and
/// declared lengths are never trusted for allocation beyond what the remaining input could
/// hold.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Value, ValueError> {
    if bytes.len() > limits.max_size {
        return Err(ValueError::TooLarge {
            size: bytes.len(),
            limit: limits.max_size,
        });
    }
    let mut decoder = Decoder {
        input: bytes,
        pos: 0,
        max_depth: limits.max_depth,
    };
    let value = decoder.value(0)?;
    match bytes.len() - decoder.pos {
        0 => Ok(value),
        extra => Err(ValueError::TrailingBytes { extra }),
    }
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    limits: &'a Limits,
}

impl Encoder<'_> {
    /// Fails if appending `additional` more bytes would exceed the size limit; called before
    /// writing so an oversized string is never copied.
    fn reserve(&mut self, additional: usize) -> Result<(), ValueError> {
        let size = (self.out.len() - self.start).saturating_add(additional);
        if size > self.limits.max_size {
            return Err(ValueError::TooLarge {
                size,
                limit: self.limits.max_size,
            });
        }
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ValueError> {
        self.reserve(bytes.len())?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn value(&mut self, value: &Value, depth: usize) -> Result<(), ValueError> {
        match value {
            Value::None => self.put(&[0xc0]),
            Value::Bool(false) => self.put(&[0xc2]),
            Value::Bool(true) => self.put(&[0xc3]),
            Value::Int(n) => self.int(*n),
            Value::Float(f) => {
                self.put(&[0xcb])?;
                self.put(&f.to_bits().to_be_bytes())
            }
            Value::String(s) => self.str(s),
            Value::Bytes(b) => {
                let len = len_u32(b.len(), "byte string")?;
                match len {
                    0..=0xff => self.put(&[0xc4, len as u8])?,
                    0x100..=0xffff => self.header16(0xc5, len as u16)?,
                    _ => self.header32(0xc6, len)?,
                }
                self.put(b)
            }
            Value::List(items) => {
                let depth = self.descend(depth)?;
                let len = len_u32(items.len(), "list")?;
                match len {
                    0..=15 => self.put(&[0x90 | len as u8])?,
                    16..=0xffff => self.header16(0xdc, len as u16)?,
                    _ => self.header32(0xdd, len)?,
                }
                items.iter().try_for_each(|item| self.value(item, depth))
            }
            Value::Map(map) => {
                let depth = self.descend(depth)?;
                let len = len_u32(map.len(), "map")?;
                match len {
                    0..=15 => self.put(&[0x80 | len as u8])?,
                    16..=0xffff => self.header16(0xde, len as u16)?,
                    _ => self.header32(0xdf, len)?,
                }
                map.iter().try_for_each(|(key, item)| {
                    self.str(key)?;
                    self.value(item, depth)
                })
            }
            Value::Date(d) => {
                let mut payload = Vec::with_capacity(6);
                put_date(&mut payload, *d);
                self.ext(EXT_DATE, &payload)
            }
            Value::Time(t) => {
                let mut payload = Vec::with_capacity(7);
                put_time(&mut payload, *t);
                self.ext(EXT_TIME, &payload)
            }
            Value::DateTime(dt) => {
                let mut payload = Vec::with_capacity(17);
                put_date(&mut payload, dt.date());
                put_time(&mut payload, dt.time());
                if let Some(offset) = dt.offset_seconds() {
                    payload.extend_from_slice(&offset.to_be_bytes());
                }
                self.ext(EXT_DATETIME, &payload)
            }
            Value::Duration(d) => {
                let mut payload = Vec::with_capacity(12);
                payload.extend_from_slice(&d.seconds().to_be_bytes());
                payload.extend_from_slice(&d.nanoseconds().to_be_bytes());
                self.ext(EXT_DURATION, &payload)
            }
            Value::Opaque(o) => {
                if let Some(ext) = foreign_ext_type(&o.type_name) {
                    return self.ext(ext, &o.data);
                }
                let name_len = u16::try_from(o.type_name.len()).map_err(|_| {
                    ValueError::Unsupported(format!(
                        "opaque type name of {} bytes is longer than 65535 bytes",
                        o.type_name.len()
                    ))
                })?;
                // Check before building the payload so an oversized value is never copied.
                self.reserve(2 + o.type_name.len() + o.data.len())?;
                let mut payload = Vec::with_capacity(2 + o.type_name.len() + o.data.len());
                payload.extend_from_slice(&name_len.to_be_bytes());
                payload.extend_from_slice(o.type_name.as_bytes());
                payload.extend_from_slice(&o.data);
                self.ext(EXT_OPAQUE, &payload)
            }
        }
    }

    fn descend(&self, depth: usize) -> Result<usize, ValueError> {
        if depth >= self.limits.max_depth {
            return Err(ValueError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        Ok(depth + 1)
    }

    /// Writes a marker byte followed by a 16-bit length.
    fn header16(&mut self, marker: u8, len: u16) -> Result<(), ValueError> {
        self.put(&[marker])?;
        self.put(&len.to_be_bytes())
    }

    /// Writes a marker byte followed by a 32-bit length.
    fn header32(&mut self, marker: u8, len: u32) -> Result<(), ValueError> {
        self.put(&[marker])?;
        self.put(&len.to_be_bytes())
    }

    fn str(&mut self, s: &str) -> Result<(), ValueError> {
        let len = len_u32(s.len(), "string")?;
        match len {
            0..=31 => self.put(&[0xa0 | len as u8])?,
            32..=0xff => self.put(&[0xd9, len as u8])?,
            0x100..=0xffff => self.header16(0xda, len as u16)?,
            _ => self.header32(0xdb, len)?,
        }
        self.put(s.as_bytes())
    }

    fn int(&mut self, n: Integer) -> Result<(), ValueError> {
        if let Some(n) = n.as_u64() {
            if n <= 0x7f {
                self.put(&[n as u8])
            } else if let Ok(n) = u8::try_from(n) {
                self.put(&[0xcc, n])
            } else if let Ok(n) = u16::try_from(n) {
                self.put(&[0xcd])?;
                self.put(&n.to_be_bytes())
            } else if let Ok(n) = u32::try_from(n) {
                self.put(&[0xce])?;
                self.put(&n.to_be_bytes())
            } else {
                self.put(&[0xcf])?;
                self.put(&n.to_be_bytes())
            }
        } else {
            // Not a u64, so it is a negative i64.
            let n = n.as_i64().unwrap_or(i64::MIN);
            if n >= -32 {
                self.put(&(n as i8).to_be_bytes())
            } else if let Ok(n) = i8::try_from(n) {
                self.put(&[0xd0])?;
                self.put(&n.to_be_bytes())
            } else if let Ok(n) = i16::try_from(n) {
                self.put(&[0xd1])?;
                self.put(&n.to_be_bytes())
            } else if let Ok(n) = i32::try_from(n) {
                self.put(&[0xd2])?;
                self.put(&n.to_be_bytes())
            } else {
                self.put(&[0xd3])?;
                self.put(&n.to_be_bytes())
            }
        }
    }

    fn ext(&mut self, ext_type: i8, payload: &[u8]) -> Result<(), ValueError> {
        let len = len_u32(payload.len(), "extension payload")?;
        let [ty] = ext_type.to_be_bytes();
        match len {
            1 => self.put(&[0xd4, ty])?,
            2 => self.put(&[0xd5, ty])?,
            4 => self.put(&[0xd6, ty])?,
            8 => self.put(&[0xd7, ty])?,
            16 => self.put(&[0xd8, ty])?,
            0..=0xff => self.put(&[0xc7, len as u8, ty])?,
            0x100..=0xffff => {
                self.put(&[0xc8])?;
                self.put(&(len as u16).to_be_bytes())?;
                self.put(&[ty])?;
            }
            _ => {
                self.put(&[0xc9])?;
                self.put(&len.to_be_bytes())?;
                self.put(&[ty])?;
            }
        }
        self.put(payload)
    }
}

fn len_u32(len: usize, what: &str) -> Result<u32, ValueError> {
    u32::try_from(len).map_err(|_| {
        ValueError::Unsupported(format!(
            "{what} of length {len} is too long for MessagePack"
        ))
    })
}

fn put_date(out: &mut Vec<u8>, d: Date) {
    out.extend_from_slice(&d.year().to_be_bytes());
    out.extend_from_slice(&[d.month(), d.day()]);
}

fn put_time(out: &mut Vec<u8>, t: Time) {
    out.extend_from_slice(&[t.hour(), t.minute(), t.second()]);
    out.extend_from_slice(&t.nanosecond().to_be_bytes());
}

/// The extension type `n` if `type_name` is exactly `msgpack.ext.<n>` for an `n` that netsvc
/// does not itself assign (those would decode to something other than this opaque value).
fn foreign_ext_type(type_name: &str) -> Option<i8> {
    let n: i8 = type_name.strip_prefix(FOREIGN_EXT_PREFIX)?.parse().ok()?;
    // Only the canonical spelling, so `msgpack.ext.+7` stays an ordinary opaque name.
    let canonical = type_name.len() == FOREIGN_EXT_PREFIX.len() + n.to_string().len();
    let reserved = n == EXT_TIMESTAMP || (EXT_DATE..=EXT_OPAQUE).contains(&n);
    (canonical && !reserved).then_some(n)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        if n > self.remaining() {
            return Err(ValueError::Truncated);
        }
        let bytes = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ValueError> {
        let mut buf = [0; N];
        buf.copy_from_slice(self.take(N)?);
        Ok(buf)
    }

    fn u8(&mut self) -> Result<u8, ValueError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, ValueError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<usize, ValueError> {
        let n = u32::from_be_bytes(self.array()?);
        // Lengths beyond usize cannot fit the remaining input anyway.
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn descend(&self, depth: usize) -> Result<usize, ValueError> {
        if depth >= self.max_depth {
            return Err(ValueError::TooDeep {
                limit: self.max_depth,
            });
        }
        Ok(depth + 1)
    }

    fn value(&mut self, depth: usize) -> Result<Value, ValueError> {
        let marker = self.u8()?;
        Ok(match marker {
            0x00..=0x7f => Value::from(marker),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.list(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => Value::String(self.str(usize::from(marker & 0x1f))?),
            0xc0 => Value::None,
            0xc1 => {
                return Err(ValueError::Unsupported(
                    "the never-used MessagePack marker 0xc1".to_owned(),
                ));
            }
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let len = usize::from(self.u8()?);
                Value::Bytes(self.take(len)?.to_vec())
            }
            0xc5 => {
                let len = self.u16()?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            0xc6 => {
                let len = self.u32()?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            0xc7 => {
                let len = usize::from(self.u8()?);
                self.ext(len)?
            }
            0xc8 => {
                let len = self.u16()?;
                self.ext(len)?
            }
            0xc9 => {
                let len = self.u32()?;
                self.ext(len)?
            }
            0xca => Value::Float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => Value::Float(f64::from_be_bytes(self.array()?)),
            0xcc => Value::from(self.u8()?),
            0xcd => Value::from(u16::from_be_bytes(self.array()?)),
            0xce => Value::from(u32::from_be_bytes(self.array()?)),
            0xcf => Value::from(u64::from_be_bytes(self.array()?)),
            0xd0 => Value::from(i8::from_be_bytes(self.array()?)),
            0xd1 => Value::from(i16::from_be_bytes(self.array()?)),
            0xd2 => Value::from(i32::from_be_bytes(self.array()?)),
            0xd3 => Value::from(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let len = usize::from(self.u8()?);
                Value::String(self.str(len)?)
            }
            0xda => {
                let len = self.u16()?;
                Value::String(self.str(len)?)
            }
            0xdb => {
                let len = self.u32()?;
                Value::String(self.str(len)?)
            }
            0xdc => {
                let len = self.u16()?;
                self.list(len, depth)?
            }
            0xdd => {
                let len = self.u32()?;
                self.list(len, depth)?
            }
            0xde => {
                let len = self.u16()?;
                self.map(len, depth)?
            }
            0xdf => {
                let len = self.u32()?;
                self.map(len, depth)?
            }
            0xe0..=0xff => Value::from(i8::from_be_bytes([marker])),
        })
    }

    fn str(&mut self, len: usize) -> Result<String, ValueError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| ValueError::InvalidUtf8)
    }

    fn list(&mut self, len: usize, depth: usize) -> Result<Value, ValueError> {
        let depth = self.descend(depth)?;
        // The declared length is untrusted: every element takes at least one input byte, so
        // more than the remaining input is a lie; and since each nesting level could claim
        // the whole input, also cap the up-front reservation (the Vec grows as needed).
        let mut items = Vec::with_capacity(len.min(self.remaining()).min(MAX_PREALLOC));
        for _ in 0..len {
            items.push(self.value(depth)?);
        }
        Ok(Value::List(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, ValueError> {
        let depth = self.descend(depth)?;
        let mut map = BTreeMap::new();
        for _ in 0..len {
            let key = self.key()?;
            let value = self.value(depth)?;
            if map.contains_key(&key) {
                return Err(ValueError::Unsupported(format!(
                    "map key {key:?} appears more than once"
                )));
            }
            map.insert(key, value);
        }
        Ok(Value::Map(map))
    }

    fn key(&mut self) -> Result<String, ValueError> {
        let marker = self.u8()?;
        let len = match marker {
            0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => usize::from(self.u8()?),
            0xda => self.u16()?,
            0xdb => self.u32()?,
            _ => {
                return Err(ValueError::Unsupported(format!(
                    "map key must be a string, found {} (marker 0x{marker:02x})",
                    marker_kind(marker)
                )));
            }
        };
        self.str(len)
    }

    fn ext(&mut self, len: usize) -> Result<Value, ValueError> {
        let [ty] = self.array::<1>()?;
        let ext_type = i8::from_be_bytes([ty]);
        let payload = self.take(len)?;
        decode_ext(ext_type, payload)
    }
}

fn decode_ext(ext_type: i8, payload: &[u8]) -> Result<Value, ValueError> {
    let wrong_len = |what: &str, expected: &str| {
        ValueError::InvalidDate(format!(
            "{what} extension payload is {} bytes, expected {expected}",
            payload.len()
        ))
    };
    Ok(match ext_type {
        EXT_DATE => {
            let bytes: &[u8; 6] = payload.try_into().map_err(|_| wrong_len("date", "6"))?;
            Value::Date(read_date(bytes)?)
        }
        EXT_TIME => {
            let bytes: &[u8; 7] = payload.try_into().map_err(|_| wrong_len("time", "7"))?;
            Value::Time(read_time(bytes)?)
        }
        EXT_DATETIME => {
            let (date, rest) = payload
                .split_first_chunk::<6>()
                .ok_or_else(|| wrong_len("date-time", "13 or 17"))?;
            let (time, rest) = rest
                .split_first_chunk::<7>()
                .ok_or_else(|| wrong_len("date-time", "13 or 17"))?;
            let offset = match rest.len() {
                0 => None,
                _ => {
                    let offset: &[u8; 4] = rest
                        .try_into()
                        .map_err(|_| wrong_len("date-time", "13 or 17"))?;
                    Some(i32::from_be_bytes(*offset))
                }
            };
            Value::DateTime(DateTime::new(read_date(date)?, read_time(time)?, offset)?)
        }
        EXT_DURATION => {
            let bytes: &[u8; 12] = payload
                .try_into()
                .map_err(|_| wrong_len("duration", "12"))?;
            let (seconds, nanos) = bytes.split_at(8);
            let mut sbuf = [0; 8];
            sbuf.copy_from_slice(seconds);
            let mut nbuf = [0; 4];
            nbuf.copy_from_slice(nanos);
            Value::Duration(Duration::new(
                i64::from_be_bytes(sbuf),
                i32::from_be_bytes(nbuf),
            )?)
        }
        EXT_OPAQUE => {
            let truncated = || {
                ValueError::Unsupported(
                    "opaque extension payload is shorter than its type name".to_owned(),
                )
            };
            let (len, rest) = payload.split_first_chunk::<2>().ok_or_else(truncated)?;
            let len = usize::from(u16::from_be_bytes(*len));
            if len > rest.len() {
                return Err(truncated());
            }
            let (name, data) = rest.split_at(len);
            let type_name = std::str::from_utf8(name).map_err(|_| ValueError::InvalidUtf8)?;
            Value::Opaque(Opaque::new(type_name, data))
        }
        EXT_TIMESTAMP => Value::DateTime(read_timestamp(payload)?),
        other => Value::Opaque(Opaque::new(format!("{FOREIGN_EXT_PREFIX}{other}"), payload)),
    })
}

fn read_date(bytes: &[u8; 6]) -> Result<Date, ValueError> {
    let [y0, y1, y2, y3, month, day] = *bytes;
    Date::new(i32::from_be_bytes([y0, y1, y2, y3]), month, day)
}

fn read_time(bytes: &[u8; 7]) -> Result<Time, ValueError> {
    let [hour, minute, second, n0, n1, n2, n3] = *bytes;
    Time::new(hour, minute, second, u32::from_be_bytes([n0, n1, n2, n3]))
}

/// The standard MessagePack timestamp extension (type -1).
fn read_timestamp(payload: &[u8]) -> Result<DateTime, ValueError> {
    let (seconds, nanos) = match payload.len() {
        4 => {
            let mut buf = [0; 4];
            buf.copy_from_slice(payload);
            (i64::from(u32::from_be_bytes(buf)), 0)
        }
        8 => {
            let mut buf = [0; 8];
            buf.copy_from_slice(payload);
            let n = u64::from_be_bytes(buf);
            // 30 bits of nanoseconds above 34 bits of seconds; both fit their targets.
            ((n & 0x3_ffff_ffff) as i64, (n >> 34) as u32)
        }
        12 => {
            let (nanos, seconds) = payload.split_at(4);
            let mut nbuf = [0; 4];
            nbuf.copy_from_slice(nanos);
            let mut sbuf = [0; 8];
            sbuf.copy_from_slice(seconds);
            (i64::from_be_bytes(sbuf), u32::from_be_bytes(nbuf))
        }
        n => {
            return Err(ValueError::InvalidDate(format!(
                "timestamp extension payload is {n} bytes, expected 4, 8 or 12"
            )));
        }
    };
    DateTime::from_unix(seconds, nanos)
}

fn marker_kind(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff => "an integer",
        0x80..=0x8f | 0xde | 0xdf => "a map",
        0x90..=0x9f | 0xdc | 0xdd => "an array",
        0xc0 => "nil",
        0xc2 | 0xc3 => "a boolean",
        0xc4..=0xc6 => "a byte string",
        0xc7..=0xc9 | 0xd4..=0xd8 => "an extension value",
        0xca | 0xcb => "a float",
        _ => "an invalid marker",
    }
}
