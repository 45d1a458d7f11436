//! The frames of the native exchange protocol and their sans-IO codec.
//!
//! Two exchange processes (or a client and an exchange) talk over a byte stream (TCP or a
//! Unix socket) by sending [`Frame`]s. Each frame is a 4-byte big-endian length followed by a
//! body that is a single MessagePack array: the frame kind, then the kind's fields in a fixed
//! order. The full specification, including the behaviour expected of each side, is in
//! `docs/PROTOCOL.md`.
//!
//! The codec never does I/O: [`encode`] appends a frame to a [`BytesMut`](bytes::BytesMut)
//! the caller writes out, and [`Decoder::decode`] takes whole frames off the front of a
//! buffer the caller fills. Decoding is zero-copy: every [`Text`] and payload in a decoded
//! [`Frame`] is a slice of the frame's own bytes, which [`Decoder::decode`] also hands back
//! so a hub can forward a frame without re-encoding it.
//!
//! Payload fields (request arguments, results, report payloads) are MessagePack-encoded
//! [`Value`](crate::Value)s that the codec carries as opaque bytes; encode and decode them
//! with [`value::encode`](crate::value::encode) and [`value::decode`](crate::value::decode).
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use netsvc_proto::wire::{Decoder, Frame, Text, encode, frame};
//!
//! let frame = Frame::Report(frame::Report {
//!     publisher: Text::from("host-a:4242/2"),
//!     subject: Text::from("quote.ACME"),
//!     seq: 42,
//!     payload: Bytes::from_static(&[0xa2, b'h', b'i']), // the value "hi"
//!     paced: false,
//! });
//! let mut received = BytesMut::new();
//! encode(&frame, &mut received);
//!
//! let decoder = Decoder::default();
//! let (decoded, raw) = decoder.decode(&mut received)?.expect("a whole frame");
//! assert_eq!(decoded, frame);
//! assert_eq!(decoded.name(), "REPORT");
//! assert_eq!(raw.len(), 4 + u32::from_be_bytes(raw[..4].try_into()?) as usize);
//! assert_eq!(decoder.decode(&mut received)?, None); // the buffer is empty again
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
mod encode;
pub mod frame;
pub mod handshake;
mod text;

#[cfg(test)]
mod tests;

pub use decode::{Decoder, decode_body};
pub use encode::{encode, encode_report, size_bound};
pub use frame::{CloseCode, Frame, Hello, Role, WireError, WithdrawCode, kind};
pub use text::Text;

/// The first field of every HELLO, so a peer that is not speaking this protocol is rejected
/// on its first frame instead of being misread.
pub const MAGIC: &str = "netsvc";

/// The protocol version this crate speaks, sent in HELLO. Peers must agree on it exactly.
pub const PROTOCOL_VERSION: u16 = 1;

/// The default largest frame body a [`Decoder`] accepts: 20 MiB, enough for a payload at the
/// 16 MiB value size limit plus the frame's other fields.
pub const DEFAULT_MAX_FRAME: usize = 20 * 1024 * 1024;
