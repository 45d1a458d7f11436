//! Frame decoding: a small MessagePack cursor over the frozen frame buffer.
//!
//! The cursor reads markers itself rather than going through a general MessagePack reader
//! so that strings and payloads come out as slices of the frame's [`Bytes`] (no copy, no
//! allocation) and every error can name the frame and field it is about.

use bytes::{Bytes, BytesMut};

use super::frame::{self, kind_name};
use super::{CloseCode, DEFAULT_MAX_FRAME, Frame, Hello, MAGIC, Role, Text, WireError, kind};

/// Deepest nesting of unknown trailing elements skipped for forward compatibility; deeper
/// input is rejected rather than risking unbounded recursion.
const MAX_SKIP_DEPTH: usize = 32;

/// Takes length-prefixed frames off the front of a receive buffer.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame: usize,
}

impl Decoder {
    /// A decoder that rejects frame bodies longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// The largest frame body accepted, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes one whole frame off the front of `buf`. `Ok(None)`: need more bytes (nothing
    /// consumed).
    ///
    /// `Ok(Some((frame, raw)))`: `raw` is the frame's complete bytes, length prefix included,
    /// so a hub can forward it unchanged; all [`Text`] and [`Bytes`] fields of `frame` are
    /// zero-copy slices of `raw`.
    ///
    /// Errors are fatal for the connection (the caller closes it); on error the buffer state
    /// is unspecified. The length prefix is checked against [`max_frame`](Self::max_frame)
    /// before waiting for the body, so an oversized frame is rejected as soon as its 4-byte
    /// prefix arrives, without buffering it.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<(Frame, Bytes)>, WireError> {
        let Some(prefix) = buf.first_chunk::<4>() else {
            return Ok(None);
        };
        // A length beyond usize is over any limit; saturating keeps the comparison honest.
        let size = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
        if size == 0 {
            return Err(WireError::Empty);
        }
        let too_large = WireError::FrameTooLarge {
            size,
            limit: self.max_frame,
        };
        if size > self.max_frame {
            return Err(too_large);
        }
        let total = size.checked_add(4).ok_or(too_large)?;
        if buf.len() < total {
            // Deliberately no `reserve(total)`: the length is untrusted until the bytes exist.
            return Ok(None);
        }
        let raw = buf.split_to(total).freeze();
        let frame = parse(&raw, 4)?;
        Ok(Some((frame, raw)))
    }
}

/// A decoder with [`DEFAULT_MAX_FRAME`].
impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

/// Decodes one frame body (what follows the length prefix), for fuzzing and tests.
///
/// No size limit applies; an empty body is [`WireError::Empty`]. The frame's fields are
/// slices of `body`.
pub fn decode_body(body: Bytes) -> Result<Frame, WireError> {
    parse(&body, 0)
}

/// Decodes the frame body that fills `data` from `start` to the end.
fn parse(data: &Bytes, start: usize) -> Result<Frame, WireError> {
    if let Some(frame) = plain_report(data, start).or_else(|| plain_service(data, start)) {
        return Ok(frame);
    }
    let mut r = Reader { data, pos: start };
    if r.remaining() == 0 {
        return Err(WireError::Empty);
    }
    let count = r
        .array_len()
        .map_err(|fault| fault.into_error("frame body"))?;
    if count == 0 {
        return Err(WireError::Malformed(
            "frame body is an empty array; the frame kind is missing".to_owned(),
        ));
    }
    let kind_value = r
        .int()
        .map_err(|fault| fault.into_error("frame kind (field 0)"))?;
    let kind = u8::try_from(kind_value)
        .map_err(|_| WireError::Malformed(format!("frame kind {kind_value} is not in 0 to 255")))?;
    let name = kind_name(kind).ok_or(WireError::UnknownKind(kind))?;
    let mut f = Fields {
        r,
        frame: name,
        count,
        next: 1,
    };
    let frame = match kind {
        kind::HELLO => hello(&mut f)?,
        kind::CLOSE => Frame::Close(frame::Close {
            code: CloseCode::from_code(f.int("code")?),
            reason: f.text("reason")?,
        }),
        kind::HEARTBEAT => Frame::Heartbeat,
        kind::SYNCED => Frame::Synced,
        kind::SERVICE => Frame::Service(frame::Service {
            address: f.text("address")?,
            name: f.text("name")?,
            audience: f.text("audience")?,
            groups: f.texts("groups")?,
            version: f.int("version")?,
            path: f.texts("path")?,
        }),
        kind::WITHDRAW => Frame::Withdraw(frame::Withdraw {
            address: f.text("address")?,
            reason: f.int("reason")?,
        }),
        kind::INTEREST => Frame::Interest(frame::Interest {
            seq: f.int("seq")?,
            all: f.bool("all")?,
            names: f.texts("names")?,
        }),
        kind::INTERESTED => Frame::Interested(frame::Interested { seq: f.int("seq")? }),
        kind::REQUEST => Frame::Request(frame::Request {
            conv: f.int("conv")?,
            to: f.text("to")?,
            from: f.opt_text("from")?,
            method: f.text("method")?,
            timeout_ms: f.int("timeout_ms")?,
            args: f.bin("args")?,
            user: match f.next < f.count {
                true => Some(f.text("user")?),
                false => None,
            },
        }),
        kind::RESPONSE => Frame::Response(frame::Response {
            conv: f.int("conv")?,
            result: f.bin("result")?,
        }),
        kind::FAILURE => Frame::Failure(frame::Failure {
            conv: f.int("conv")?,
            error: f.int("error")?,
            description: f.text("description")?,
            origin: f.text("origin")?,
            details: f.text("details")?,
            withdrawn: f.next < f.count && f.bool("withdrawn")?,
        }),
        kind::CANCEL => Frame::Cancel(frame::Cancel {
            conv: f.int("conv")?,
        }),
        kind::SUBSCRIBE => Frame::Subscribe(frame::Subscribe {
            sid: f.int("sid")?,
            publisher: f.text("publisher")?,
            subscriber: f.text("subscriber")?,
            pattern: f.text("pattern")?,
        }),
        kind::SUBSCRIBED => Frame::Subscribed(frame::Subscribed {
            sid: f.int("sid")?,
            refused: f.next < f.count && f.bool("refused")?,
        }),
        kind::UNSUBSCRIBE => Frame::Unsubscribe(frame::Unsubscribe { sid: f.int("sid")? }),
        kind::REPORT => Frame::Report(frame::Report {
            publisher: f.text("publisher")?,
            subject: f.text("subject")?,
            seq: f.int("seq")?,
            payload: f.bin("payload")?,
            paced: f.next < f.count && f.bool("paced")?,
        }),
        kind::TARGETED => Frame::Targeted(frame::Targeted {
            sid: f.int("sid")?,
            subject: f.text("subject")?,
            seq: f.int("seq")?,
            pattern: f.opt_text("pattern")?,
            targeted: f.bool("targeted")?,
            payload: f.bin("payload")?,
        }),
        kind::MISSED => Frame::Missed(frame::Missed {
            publisher: f.text("publisher")?,
            count: f.int("count")?,
        }),
        // `kind_name` knows exactly the kinds matched above.
        other => return Err(WireError::UnknownKind(other)),
    };
    f.finish()?;
    Ok(frame)
}

/// A REPORT exactly as encoders write it (four fields, or five when paced), read in one
/// straight pass: most of a link's traffic is REPORT frames, and the general path's
/// per-field bookkeeping (names for errors, skipping unknown fields) costs more than the
/// reading. Anything else, errors included, is left to the general path.
fn plain_report(data: &Bytes, start: usize) -> Option<Frame> {
    let mut r = Reader { data, pos: start };
    let paced = match r.u8().ok()? {
        0x95 => false,
        0x96 => true,
        _ => return None,
    };
    if r.u8().ok()? != kind::REPORT {
        return None;
    }
    let publisher = r.text().ok()?;
    let subject = r.text().ok()?;
    let seq = plain_uint(&mut r)?;
    let payload = r.bin().ok()?;
    if paced && r.u8().ok()? != 0xc3 {
        return None;
    }
    (r.remaining() == 0).then_some(Frame::Report(frame::Report {
        publisher,
        subject,
        seq,
        payload,
        paced,
    }))
}

/// A SERVICE exactly as encoders write it, in one straight pass like [`plain_report`]: a
/// registry sync is a burst of thousands of them.
fn plain_service(data: &Bytes, start: usize) -> Option<Frame> {
    let mut r = Reader { data, pos: start };
    if r.u8().ok()? != 0x97 || r.u8().ok()? != kind::SERVICE {
        return None;
    }
    let address = r.text().ok()?;
    let name = r.text().ok()?;
    let audience = r.text().ok()?;
    let groups = plain_texts(&mut r)?;
    let version = plain_uint(&mut r)?;
    let path = plain_texts(&mut r)?;
    (r.remaining() == 0).then_some(Frame::Service(frame::Service {
        address,
        name,
        audience,
        groups,
        version,
        path,
    }))
}

/// An unsigned integer in any of its MessagePack forms (negative ones are left to the
/// general path, which says why they are wrong).
fn plain_uint(r: &mut Reader<'_>) -> Option<u64> {
    Some(match r.u8().ok()? {
        marker @ 0x00..=0x7f => u64::from(marker),
        0xcc => u64::from(r.u8().ok()?),
        0xcd => u64::from(u16::from_be_bytes(r.array().ok()?)),
        0xce => u64::from(u32::from_be_bytes(r.array().ok()?)),
        0xcf => u64::from_be_bytes(r.array().ok()?),
        _ => return None,
    })
}

/// A short array of strings (a fixarray: at most 15), as SERVICE frames carry.
fn plain_texts(r: &mut Reader<'_>) -> Option<Vec<Text>> {
    let marker = r.u8().ok()?;
    if !(0x90..=0x9f).contains(&marker) {
        return None;
    }
    let len = usize::from(marker & 0x0f);
    let mut texts = Vec::with_capacity(len);
    for _ in 0..len {
        texts.push(r.text().ok()?);
    }
    Some(texts)
}

fn hello(f: &mut Fields<'_>) -> Result<Frame, WireError> {
    // Checked before anything else so a stranger gets BadMagic, not a field-type complaint.
    if f.next >= f.count {
        return Err(WireError::BadMagic);
    }
    f.next += 1;
    match f.r.str_bytes() {
        Ok(magic) if magic == MAGIC.as_bytes() => {}
        _ => return Err(WireError::BadMagic),
    }
    let version = f.int("version")?;
    let role = f.field("role", |r| {
        let bytes = r.str_bytes()?;
        std::str::from_utf8(bytes)
            .ok()
            .and_then(Role::from_wire)
            .ok_or(Fault::Invalid("expected \"client\" or \"server\""))
    })?;
    Ok(Frame::Hello(Hello {
        version,
        role,
        group: f.text("group")?,
        process: f.text("process")?,
        incarnation: f.int("incarnation")?,
        heartbeat_ms: f.int("heartbeat_ms")?,
        max_frame: f.int("max_frame")?,
        options: f.field("options", Reader::text_map)?,
    }))
}

/// What went wrong inside one MessagePack value, before it is attributed to a field.
#[derive(Debug)]
enum Fault {
    /// The body ended inside the value.
    Truncated,
    /// The value has the wrong type.
    Type {
        expected: &'static str,
        marker: u8,
    },
    /// An integer outside the field's range.
    Range {
        expected: &'static str,
        value: i128,
    },
    /// Some other violation, described.
    Invalid(&'static str),
    InvalidUtf8,
}

impl Fault {
    fn into_error(self, place: &str) -> WireError {
        let what = match self {
            Self::InvalidUtf8 => return WireError::InvalidUtf8,
            Self::Truncated => "the body ends in the middle of the value".to_owned(),
            Self::Type { expected, marker } => format!(
                "expected {expected}, found {} (marker 0x{marker:02x})",
                marker_kind(marker)
            ),
            Self::Range { expected, value } => format!("expected {expected}, found {value}"),
            Self::Invalid(what) => what.to_owned(),
        };
        WireError::Malformed(format!("{place}: {what}"))
    }
}

/// An integer type a field can have, with its description for error messages.
trait FieldInt: TryFrom<i128> {
    const EXPECTED: &'static str;
}

impl FieldInt for u8 {
    const EXPECTED: &'static str = "an integer in 0 to 255";
}
impl FieldInt for u16 {
    const EXPECTED: &'static str = "an integer in 0 to 65535";
}
impl FieldInt for u32 {
    const EXPECTED: &'static str = "an unsigned 32-bit integer";
}
impl FieldInt for u64 {
    const EXPECTED: &'static str = "an unsigned 64-bit integer";
}
impl FieldInt for i32 {
    const EXPECTED: &'static str = "a signed 32-bit integer";
}

/// The fields of one frame body, read in order, with the context for error messages.
struct Fields<'a> {
    r: Reader<'a>,
    frame: &'static str,
    /// Elements in the body array, the kind included.
    count: usize,
    /// The index of the next element to read.
    next: usize,
}

impl<'a> Fields<'a> {
    fn field<T>(
        &mut self,
        name: &'static str,
        read: impl FnOnce(&mut Reader<'a>) -> Result<T, Fault>,
    ) -> Result<T, WireError> {
        let index = self.next;
        if index >= self.count {
            return Err(WireError::Malformed(format!(
                "{} field {index} ({name}): missing, the body array has only {} elements",
                self.frame, self.count
            )));
        }
        self.next += 1;
        read(&mut self.r)
            .map_err(|fault| fault.into_error(&format!("{} field {index} ({name})", self.frame)))
    }

    fn int<T: FieldInt>(&mut self, name: &'static str) -> Result<T, WireError> {
        self.field(name, |r| {
            let value = r.int()?;
            T::try_from(value).map_err(|_| Fault::Range {
                expected: T::EXPECTED,
                value,
            })
        })
    }

    fn text(&mut self, name: &'static str) -> Result<Text, WireError> {
        self.field(name, Reader::text)
    }

    fn opt_text(&mut self, name: &'static str) -> Result<Option<Text>, WireError> {
        self.field(name, |r| {
            if r.peek() == Some(0xc0) {
                r.pos += 1;
                Ok(None)
            } else {
                r.text().map(Some)
            }
        })
    }

    fn texts(&mut self, name: &'static str) -> Result<Vec<Text>, WireError> {
        self.field(name, |r| {
            let len = r.array_len()?;
            // Each element takes at least one byte, so a longer claim is a lie; never reserve
            // more than the body could hold.
            let mut items = Vec::with_capacity(len.min(r.remaining()));
            for _ in 0..len {
                items.push(r.text()?);
            }
            Ok(items)
        })
    }

    fn bin(&mut self, name: &'static str) -> Result<Bytes, WireError> {
        self.field(name, Reader::bin)
    }

    fn bool(&mut self, name: &'static str) -> Result<bool, WireError> {
        self.field(name, |r| match r.u8()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            marker => Err(Fault::Type {
                expected: "a boolean",
                marker,
            }),
        })
    }

    /// Skips the elements a newer peer may have appended and checks nothing follows the
    /// array.
    fn finish(mut self) -> Result<(), WireError> {
        for index in self.next..self.count {
            self.r.skip(0).map_err(|fault| {
                fault.into_error(&format!("{} field {index} (unknown)", self.frame))
            })?;
        }
        match self.r.remaining() {
            0 => Ok(()),
            extra => Err(WireError::Malformed(format!(
                "{}: {extra} bytes after the body array",
                self.frame
            ))),
        }
    }
}

/// A cursor over a frame body that hands out slices of the shared buffer.
struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    /// The range of the next `n` bytes, consumed.
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, Fault> {
        if n > self.remaining() {
            return Err(Fault::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(start..self.pos)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        let range = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.data[range]);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Fault> {
        let [b] = self.array()?;
        Ok(b)
    }

    fn len16(&mut self) -> Result<usize, Fault> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn len32(&mut self) -> Result<usize, Fault> {
        // A length beyond usize cannot fit the remaining input anyway.
        Ok(usize::try_from(u32::from_be_bytes(self.array()?)).unwrap_or(usize::MAX))
    }

    /// An integer in any MessagePack int form.
    fn int(&mut self) -> Result<i128, Fault> {
        let marker = self.u8()?;
        Ok(match marker {
            0x00..=0x7f => i128::from(marker),
            0xcc => i128::from(self.u8()?),
            0xcd => i128::from(u16::from_be_bytes(self.array()?)),
            0xce => i128::from(u32::from_be_bytes(self.array()?)),
            0xcf => i128::from(u64::from_be_bytes(self.array()?)),
            0xd0 => i128::from(i8::from_be_bytes(self.array()?)),
            0xd1 => i128::from(i16::from_be_bytes(self.array()?)),
            0xd2 => i128::from(i32::from_be_bytes(self.array()?)),
            0xd3 => i128::from(i64::from_be_bytes(self.array()?)),
            0xe0..=0xff => i128::from(i8::from_be_bytes([marker])),
            _ => {
                return Err(Fault::Type {
                    expected: "an integer",
                    marker,
                });
            }
        })
    }

    /// The raw bytes of a str, not yet checked for UTF-8.
    fn str_bytes(&mut self) -> Result<&[u8], Fault> {
        let range = self.str_range()?;
        Ok(&self.data[range])
    }

    fn str_range(&mut self) -> Result<std::ops::Range<usize>, Fault> {
        let marker = self.u8()?;
        let len = match marker {
            0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => usize::from(self.u8()?),
            0xda => self.len16()?,
            0xdb => self.len32()?,
            _ => {
                return Err(Fault::Type {
                    expected: "a string",
                    marker,
                });
            }
        };
        self.take(len)
    }

    fn text(&mut self) -> Result<Text, Fault> {
        let range = self.str_range()?;
        // The one UTF-8 check of this field's life: `Text` keeps the result, so `as_str`
        // never repeats it.
        Text::try_from_bytes(self.data.slice(range)).map_err(|_| Fault::InvalidUtf8)
    }

    fn bin(&mut self) -> Result<Bytes, Fault> {
        let marker = self.u8()?;
        let len = match marker {
            0xc4 => usize::from(self.u8()?),
            0xc5 => self.len16()?,
            0xc6 => self.len32()?,
            _ => {
                return Err(Fault::Type {
                    expected: "a byte string (bin)",
                    marker,
                });
            }
        };
        let range = self.take(len)?;
        Ok(self.data.slice(range))
    }

    fn array_len(&mut self) -> Result<usize, Fault> {
        let marker = self.u8()?;
        match marker {
            0x90..=0x9f => Ok(usize::from(marker & 0x0f)),
            0xdc => self.len16(),
            0xdd => self.len32(),
            _ => Err(Fault::Type {
                expected: "an array",
                marker,
            }),
        }
    }

    fn map_len(&mut self) -> Result<usize, Fault> {
        let marker = self.u8()?;
        match marker {
            0x80..=0x8f => Ok(usize::from(marker & 0x0f)),
            0xde => self.len16(),
            0xdf => self.len32(),
            _ => Err(Fault::Type {
                expected: "a map",
                marker,
            }),
        }
    }

    fn text_map(&mut self) -> Result<Vec<(Text, Text)>, Fault> {
        let len = self.map_len()?;
        // Each entry takes at least two bytes; see `Fields::texts`.
        let mut entries = Vec::with_capacity(len.min(self.remaining() / 2));
        for _ in 0..len {
            let key = self.text()?;
            let value = self.text()?;
            entries.push((key, value));
        }
        Ok(entries)
    }

    /// Skips one value of any type. Every step consumes input or fails, so even a huge
    /// declared element count costs no more than the bytes present.
    fn skip(&mut self, depth: usize) -> Result<(), Fault> {
        let marker = self.u8()?;
        let (skip, elements) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (0, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc1 => return Err(Fault::Invalid("the never-used MessagePack marker 0xc1")),
            0xc4 | 0xd9 => (usize::from(self.u8()?), 0),
            0xc5 | 0xda => (self.len16()?, 0),
            0xc6 | 0xdb => (self.len32()?, 0),
            // Extensions: the length, then a type byte before the data.
            0xc7 => (usize::from(self.u8()?).saturating_add(1), 0),
            0xc8 => (self.len16()?.saturating_add(1), 0),
            0xc9 => (self.len32()?.saturating_add(1), 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, self.len16()?),
            0xdd => (0, self.len32()?),
            0xde => (0, self.len16()?.saturating_mul(2)),
            0xdf => (0, self.len32()?.saturating_mul(2)),
        };
        self.take(skip)?;
        if elements > 0 {
            if depth >= MAX_SKIP_DEPTH {
                return Err(Fault::Invalid("unknown field nested too deeply"));
            }
            for _ in 0..elements {
                self.skip(depth + 1)?;
            }
        }
        Ok(())
    }
}

fn marker_kind(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff => "an integer",
        0x80..=0x8f | 0xde | 0xdf => "a map",
        0x90..=0x9f | 0xdc | 0xdd => "an array",
        0xa0..=0xbf | 0xd9..=0xdb => "a string",
        0xc0 => "nil",
        0xc2 | 0xc3 => "a boolean",
        0xc4..=0xc6 => "a byte string",
        0xc7..=0xc9 | 0xd4..=0xd8 => "an extension value",
        0xca | 0xcb => "a float",
        _ => "an invalid marker",
    }
}
