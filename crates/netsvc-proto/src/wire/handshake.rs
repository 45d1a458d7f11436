//! The handshake's decisions, without I/O: is the peer's HELLO here yet, and may the link be
//! established with it?
//!
//! A link task feeds [`step`] the bytes received so far (and reads more while it says
//! [`Step::NeedMore`]); the function takes the peer's first frame off the buffer and either
//! accepts its HELLO or says how to refuse the link (PROTOCOL.md §6.1). Keeping the decision
//! here rather than in the socket code lets it be unit-tested and fuzzed byte by byte.
//!
//! ```
//! use bytes::BytesMut;
//! use netsvc_proto::wire::handshake::{self, Local, Step};
//! use netsvc_proto::wire::{CloseCode, Frame, Hello, Role, Text, encode};
//!
//! let local = Local::new("default", "hub:1");
//! let mut hello = Hello {
//!     version: 1,
//!     role: Role::Client,
//!     group: Text::from("default"),
//!     process: Text::from("host-a:4242"),
//!     incarnation: 7,
//!     heartbeat_ms: 1000,
//!     max_frame: 1 << 20,
//!     options: Vec::new(),
//! };
//! let mut received = BytesMut::new();
//! encode(&Frame::Hello(hello.clone()), &mut received);
//! let mut partial = received.split_to(10);
//! assert!(matches!(handshake::step(&mut partial, &local), Step::NeedMore));
//! partial.unsplit(received);
//! assert!(matches!(handshake::step(&mut partial, &local), Step::Accept(h) if h == hello));
//!
//! hello.process = Text::from("hub:1"); // our own identity
//! encode(&Frame::Hello(hello), &mut partial);
//! let Step::Reject(refusal) = handshake::step(&mut partial, &local) else { panic!() };
//! assert_eq!(refusal.code, Some(CloseCode::IdentityConflict));
//! ```

use bytes::BytesMut;

use super::{
    CloseCode, DEFAULT_MAX_FRAME, Decoder, Frame, Hello, MAGIC, PROTOCOL_VERSION, WireError, frame,
};

/// The largest first frame accepted from a peer that has not completed the handshake:
/// 64 KiB, far more than any HELLO needs.
///
/// Until the handshake is done the peer is a stranger; without this bound a connection could
/// make the receiver buffer up to the full `max_frame` (20 MiB by default) before being
/// refused, which a few hundred connections would turn into gigabytes.
pub const MAX_HELLO: usize = 64 * 1024;

/// What this side checks the peer's HELLO against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local<'a> {
    /// This side's exchange group; the peer must be in the same one.
    pub group: &'a str,
    /// This side's process identity; the peer must not claim it.
    pub process: &'a str,
    /// The protocol version spoken here.
    pub version: u16,
    /// The largest frame body this side accepts at all; the handshake accepts at most
    /// [`MAX_HELLO`] of it.
    pub max_frame: usize,
}

impl<'a> Local<'a> {
    /// This crate's [`PROTOCOL_VERSION`] and [`DEFAULT_MAX_FRAME`], for group `group` and
    /// process identity `process`.
    pub fn new(group: &'a str, process: &'a str) -> Self {
        Self {
            group,
            process,
            version: PROTOCOL_VERSION,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The first frame is not complete yet; nothing was consumed. Read more and call again.
    NeedMore,
    /// The peer's HELLO passed every check. Only its frame was consumed: anything the peer
    /// sent after it is still in the buffer, for the link to decode.
    Accept(Hello),
    /// The link must not be established.
    Reject(Rejection),
}

/// Why a handshake failed, and how to tell the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The code of the CLOSE frame to send before closing the connection; `None` when the
    /// peer itself closed the link during the handshake (nothing is to be sent back).
    pub code: Option<CloseCode>,
    /// A sentence for the CLOSE frame and the log.
    pub reason: String,
    /// Who decided, and what the peer turned out to be: what a connecting side needs to say
    /// why it could not link.
    pub cause: Cause,
}

/// What ended a handshake, for a side that has to explain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// This side refused the peer's first frame with this CLOSE code.
    Refused(CloseCode),
    /// The peer refused this side: it sent CLOSE with this code during the handshake.
    PeerClosed(CloseCode),
    /// The peer speaks the original OSE exchange protocol: its frames start with the bytes
    /// `AA AA 30 33` ([`OSE_MAGIC`]).
    OseExchange,
    /// The peer speaks some other protocol (an HTTP server, say): its first bytes cannot
    /// start a netsvc frame.
    NotNetsvc,
    /// The peer opened a TLS handshake on a port that speaks plaintext netsvc: its first
    /// bytes are a TLS handshake record (`16 03`).
    Tls,
}

/// The four bytes that open every frame of the original OSE exchange protocol.
pub const OSE_MAGIC: [u8; 4] = [0xaa, 0xaa, 0x30, 0x33];

impl Rejection {
    fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            reason: reason.into(),
            cause: Cause::Refused(code),
        }
    }

    fn stranger(cause: Cause, reason: String) -> Self {
        Self {
            code: Some(CloseCode::ProtocolError),
            reason,
            cause,
        }
    }
}

/// Takes the peer's first frame off `received` and decides on it, in the order of
/// PROTOCOL.md §6.1: the magic, the version, the group, then the process identity (which
/// must not be this side's own, and must be usable as a process identity).
///
/// Authorisation by network address and duplicate links are decided elsewhere (on accept,
/// and when the link is registered). After a [`Step::Reject`] the buffer's content is
/// unspecified; the connection is to be closed anyway.
pub fn step(received: &mut BytesMut, local: &Local<'_>) -> Step {
    let limit = local.max_frame.min(MAX_HELLO);
    if let Some(stranger) = stranger(received, local.max_frame) {
        return Step::Reject(stranger);
    }
    // A peer speaking another version may have changed the HELLO's later fields; look at the
    // version before decoding the rest, so that it hears "version mismatch" rather than a
    // complaint about a field it has every right to have changed.
    if let Some(version) = peek_version(received, limit)
        && version != u64::from(local.version)
    {
        return Step::Reject(version_mismatch(version, local.version));
    }
    let hello = match Decoder::new(limit).decode(received) {
        Ok(None) => return Step::NeedMore,
        Ok(Some((Frame::Hello(hello), _))) => hello,
        Ok(Some((Frame::Close(frame::Close { code, reason }), _))) => {
            return Step::Reject(Rejection {
                code: None,
                reason: format!("peer closed: {code}: {reason}"),
                cause: Cause::PeerClosed(code),
            });
        }
        Ok(Some((other, _))) => {
            return Step::Reject(Rejection::new(
                CloseCode::ProtocolError,
                format!("expected HELLO, got {}", other.name()),
            ));
        }
        Err(WireError::FrameTooLarge { size, limit }) => {
            return Step::Reject(Rejection::new(
                CloseCode::FrameTooLarge,
                format!("first frame of {size} bytes is over the handshake limit of {limit} bytes"),
            ));
        }
        Err(WireError::BadMagic) => {
            return Step::Reject(Rejection::new(
                CloseCode::ProtocolError,
                "not a netsvc peer: HELLO without the \"netsvc\" magic",
            ));
        }
        Err(e) => return Step::Reject(Rejection::new(CloseCode::ProtocolError, e.to_string())),
    };
    match check(&hello, local) {
        Ok(()) => Step::Accept(hello),
        Err(rejection) => Step::Reject(rejection),
    }
}

/// A peer whose first four bytes cannot open a netsvc frame: the original OSE protocol's
/// magic, or a length beyond any frame this side would accept with its default limits
/// (text such as `HTTP` or `SSH-` reads as a length of over a gigabyte).
fn stranger(received: &[u8], max_frame: usize) -> Option<Rejection> {
    let first = *received.first_chunk::<4>()?;
    if first == OSE_MAGIC {
        return Some(Rejection::stranger(
            Cause::OseExchange,
            "this is an original OSE exchange, not a netsvc one (its frames start with the \
             bytes AA AA 30 33)"
                .to_owned(),
        ));
    }
    // A TLS record header: content type 22 (handshake), protocol version 3.x.
    if first[0] == 0x16 && first[1] == 0x03 {
        return Some(Rejection::stranger(
            Cause::Tls,
            "a TLS client on a plaintext port: this port speaks netsvc without TLS".to_owned(),
        ));
    }
    let size = usize::try_from(u32::from_be_bytes(first)).ok()?;
    // A peer configured for small frames may still be a netsvc peer sending a big HELLO.
    if size <= max_frame.max(DEFAULT_MAX_FRAME) {
        return None;
    }
    Some(Rejection::stranger(
        Cause::NotNetsvc,
        format!("not a netsvc peer: it sent {}", describe(received)),
    ))
}

/// The first bytes of a stranger's stream, as text if they are printable, else in hex.
fn describe(received: &[u8]) -> String {
    let head = &received[..received.len().min(24)];
    let printable = head
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r' || *b == b'\n');
    if printable {
        let text: String = head.iter().map(|&b| char::from(b)).collect();
        format!("{:?}", text.trim_end())
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02X}")).collect();
        format!("the bytes {}", hex.join(" "))
    }
}

/// Validates a decoded HELLO against this side.
fn check(peer: &Hello, local: &Local<'_>) -> Result<(), Rejection> {
    if peer.version != local.version {
        return Err(version_mismatch(u64::from(peer.version), local.version));
    }
    if peer.group.as_str() != local.group {
        return Err(Rejection::new(
            CloseCode::GroupMismatch,
            format!(
                "exchange group {:?} does not match {:?}",
                peer.group.as_str(),
                local.group
            ),
        ));
    }
    if peer.process.as_str() == local.process {
        return Err(Rejection::new(
            CloseCode::IdentityConflict,
            format!("peer claims this process's identity {}", peer.process),
        ));
    }
    // `!` and `@` separate the parts of service addresses built from the identity, and a
    // hub substitutes it into permission patterns (`$process`), where a wildcard in it
    // would let a client choose its own rights.
    if let Err(e) = crate::names::check_process_identity(&peer.process) {
        return Err(Rejection::new(
            CloseCode::ProtocolError,
            format!("invalid process identity: {e}"),
        ));
    }
    Ok(())
}

fn version_mismatch(theirs: u64, ours: u16) -> Rejection {
    Rejection::new(
        CloseCode::VersionMismatch,
        format!("protocol version {theirs} is not supported (this side speaks {ours})"),
    )
}

/// The version field of a complete first frame that starts like a HELLO (the kind, then the
/// magic), however the rest of it looks; `None` if the frame is incomplete, over `limit`,
/// or does not start like a HELLO.
fn peek_version(received: &[u8], limit: usize) -> Option<u64> {
    let size = usize::try_from(u32::from_be_bytes(*received.first_chunk::<4>()?)).ok()?;
    if size > limit {
        return None;
    }
    let mut body = received.get(4..4 + size)?;
    let fields = rmp::decode::read_array_len(&mut body).ok()?;
    if fields < 3 {
        return None;
    }
    let kind: u64 = rmp::decode::read_int(&mut body).ok()?;
    if kind != u64::from(super::kind::HELLO) {
        return None;
    }
    let magic_len = usize::try_from(rmp::decode::read_str_len(&mut body).ok()?).ok()?;
    if body.get(..magic_len)? != MAGIC.as_bytes() {
        return None;
    }
    body = &body[magic_len..];
    rmp::decode::read_int(&mut body).ok()
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;
    use crate::wire::{Role, Text, encode};

    fn hello(group: &str, process: &str) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            group: Text::from(group),
            process: Text::from(process),
            incarnation: 1,
            heartbeat_ms: 1000,
            max_frame: 1 << 20,
            options: Vec::new(),
        }
    }

    fn bytes_of(frames: &[Frame]) -> BytesMut {
        let mut buf = BytesMut::new();
        for f in frames {
            encode(f, &mut buf);
        }
        buf
    }

    fn framed(body: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
        buf.put_slice(body);
        buf
    }

    const LOCAL: Local<'static> = Local {
        group: "g",
        process: "hub:1",
        version: PROTOCOL_VERSION,
        max_frame: DEFAULT_MAX_FRAME,
    };

    fn rejected(buf: &mut BytesMut) -> (Option<CloseCode>, String) {
        match step(buf, &LOCAL) {
            Step::Reject(r) => (r.code, r.reason),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_good_hello_is_accepted_and_what_follows_it_stays() {
        let mut buf = bytes_of(&[Frame::Hello(hello("g", "peer:2")), Frame::Synced]);
        let total = buf.len();
        assert_eq!(step(&mut buf, &LOCAL), Step::Accept(hello("g", "peer:2")));
        assert_eq!(buf.len(), 6, "SYNCED (6 bytes) is left of {total}");
    }

    #[test]
    fn every_prefix_needs_more_and_consumes_nothing() {
        let whole = bytes_of(&[Frame::Hello(hello("g", "peer:2"))]);
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(step(&mut part, &LOCAL), Step::NeedMore, "cut at {cut}");
            assert_eq!(part.len(), cut);
        }
    }

    #[test]
    fn each_check_has_its_close_code() {
        let mut wrong_group = bytes_of(&[Frame::Hello(hello("other", "peer:2"))]);
        assert_eq!(rejected(&mut wrong_group).0, Some(CloseCode::GroupMismatch));
        let mut ours = bytes_of(&[Frame::Hello(hello("g", "hub:1"))]);
        let (code, reason) = rejected(&mut ours);
        assert_eq!(code, Some(CloseCode::IdentityConflict));
        assert!(reason.contains("hub:1"), "{reason}");
        for bad in ["", "a!b", "a@b", "*", "host?", "x$user"] {
            let mut buf = bytes_of(&[Frame::Hello(hello("g", bad))]);
            assert_eq!(
                rejected(&mut buf).0,
                Some(CloseCode::ProtocolError),
                "{bad:?}"
            );
        }
        let mut not_hello = bytes_of(&[Frame::Heartbeat]);
        let (code, reason) = rejected(&mut not_hello);
        assert_eq!(code, Some(CloseCode::ProtocolError));
        assert_eq!(reason, "expected HELLO, got HEARTBEAT");
        let mut closed = bytes_of(&[Frame::Close(frame::Close {
            code: CloseCode::NotAuthorised,
            reason: Text::from("go away"),
        })]);
        assert_eq!(
            rejected(&mut closed),
            (None, "peer closed: not authorised: go away".to_owned())
        );
        let mut closed = bytes_of(&[Frame::Close(frame::Close {
            code: CloseCode::GroupMismatch,
            reason: Text::from("no"),
        })]);
        let Step::Reject(r) = step(&mut closed, &LOCAL) else {
            panic!("a CLOSE is a rejection")
        };
        assert_eq!(r.cause, Cause::PeerClosed(CloseCode::GroupMismatch));
    }

    #[test]
    fn another_version_is_a_version_mismatch_whatever_its_hello_looks_like() {
        let mut v2 = hello("g", "peer:2");
        v2.version = 2;
        let mut buf = bytes_of(&[Frame::Hello(v2)]);
        let (code, reason) = rejected(&mut buf);
        assert_eq!(code, Some(CloseCode::VersionMismatch));
        assert!(reason.contains("version 2"), "{reason}");
        // A version-2 HELLO whose later fields changed type: still a version mismatch.
        // [1, "netsvc", 2, 42]
        let mut odd = framed(&[
            0x94, 0x01, 0xa6, b'n', b'e', b't', b's', b'v', b'c', 0x02, 42,
        ]);
        assert_eq!(rejected(&mut odd).0, Some(CloseCode::VersionMismatch));
        // The same shape with version 1 is simply malformed.
        let mut v1 = framed(&[
            0x94, 0x01, 0xa6, b'n', b'e', b't', b's', b'v', b'c', 0x01, 42,
        ]);
        assert_eq!(rejected(&mut v1).0, Some(CloseCode::ProtocolError));
    }

    #[test]
    fn strangers_are_protocol_errors_and_big_first_frames_are_refused_early() {
        // An HTTP request: "GET " is a length of 1.2 GB, beyond any frame.
        let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        let Step::Reject(r) = step(&mut http, &LOCAL) else {
            panic!("HTTP is refused")
        };
        assert_eq!(
            (r.code, r.cause),
            (Some(CloseCode::ProtocolError), Cause::NotNetsvc)
        );
        assert_eq!(r.reason, "not a netsvc peer: it sent \"GET / HTTP/1.1\"");
        // An original OSE peer, known from its first four bytes alone.
        let mut ose = BytesMut::from(&[0xaa, 0xaa, 0x30, 0x33][..]);
        let Step::Reject(r) = step(&mut ose, &LOCAL) else {
            panic!("OSE is refused")
        };
        assert_eq!(r.cause, Cause::OseExchange);
        assert!(r.reason.contains("original OSE exchange"), "{}", r.reason);
        let mut binary = BytesMut::from(&[0xff, 0x00, 0x01, 0x02][..]);
        let Step::Reject(r) = step(&mut binary, &LOCAL) else {
            panic!("a huge length is refused")
        };
        assert_eq!(r.reason, "not a netsvc peer: it sent the bytes FF 00 01 02");
        // A TLS ClientHello on a plaintext port, known from its record header.
        let mut tls = BytesMut::from(&[0x16, 0x03, 0x01, 0x02, 0x00][..]);
        let Step::Reject(r) = step(&mut tls, &LOCAL) else {
            panic!("TLS is refused")
        };
        assert_eq!(
            (r.code, r.cause),
            (Some(CloseCode::ProtocolError), Cause::Tls)
        );
        assert!(
            r.reason.contains("TLS client on a plaintext port"),
            "{}",
            r.reason
        );
        // Just over the HELLO limit: refused from the prefix alone.
        let mut big = BytesMut::new();
        big.put_u32(u32::try_from(MAX_HELLO + 1).unwrap_or(u32::MAX));
        let (code, reason) = rejected(&mut big);
        assert_eq!(code, Some(CloseCode::FrameTooLarge));
        assert!(reason.contains("handshake limit"), "{reason}");
        // A smaller configured max_frame applies to the HELLO too.
        let small = Local {
            max_frame: 16,
            ..LOCAL
        };
        let mut buf = bytes_of(&[Frame::Hello(hello("g", "peer:2"))]);
        assert!(matches!(
            step(&mut buf, &small),
            Step::Reject(Rejection {
                code: Some(CloseCode::FrameTooLarge),
                ..
            })
        ));
        // A HELLO without the magic.
        let mut no_magic = framed(&[0x93, 0x01, 0xa3, b'f', b'o', b'o', 0x01]);
        let (code, reason) = rejected(&mut no_magic);
        assert_eq!(code, Some(CloseCode::ProtocolError));
        assert!(reason.starts_with("not a netsvc peer"), "{reason}");
        // Garbage of a plausible length.
        let mut garbage = framed(&[0xc1, 0xff, 0x00]);
        assert_eq!(rejected(&mut garbage).0, Some(CloseCode::ProtocolError));
        let mut zero = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(rejected(&mut zero).0, Some(CloseCode::ProtocolError));
        // An unknown kind.
        let mut unknown = framed(&[0x91, 0x7f]);
        let (code, reason) = rejected(&mut unknown);
        assert_eq!(code, Some(CloseCode::ProtocolError));
        assert!(reason.contains("unknown frame kind 0x7f"), "{reason}");
    }
}
