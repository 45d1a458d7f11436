//! The frame types and the codec's error type.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

use super::Text;

/// The kind numbers that open each frame body (element 0 of the array).
///
/// The high nibble groups the kinds: `0x0_` link control, `0x1_` registry, `0x2_` requests,
/// `0x3_` reports. A hub can read the kind from a raw frame without decoding it.
pub mod kind {
    /// [`Frame::Hello`](super::Frame::Hello).
    pub const HELLO: u8 = 0x01;
    /// [`Frame::Close`](super::Frame::Close).
    pub const CLOSE: u8 = 0x02;
    /// [`Frame::Heartbeat`](super::Frame::Heartbeat).
    pub const HEARTBEAT: u8 = 0x03;
    /// [`Frame::Synced`](super::Frame::Synced).
    pub const SYNCED: u8 = 0x04;
    /// [`Frame::Service`](super::Frame::Service).
    pub const SERVICE: u8 = 0x10;
    /// [`Frame::Withdraw`](super::Frame::Withdraw).
    pub const WITHDRAW: u8 = 0x11;
    /// [`Frame::Interest`](super::Frame::Interest).
    pub const INTEREST: u8 = 0x12;
    /// [`Frame::Interested`](super::Frame::Interested).
    pub const INTERESTED: u8 = 0x13;
    /// [`Frame::Request`](super::Frame::Request).
    pub const REQUEST: u8 = 0x20;
    /// [`Frame::Response`](super::Frame::Response).
    pub const RESPONSE: u8 = 0x21;
    /// [`Frame::Failure`](super::Frame::Failure).
    pub const FAILURE: u8 = 0x22;
    /// [`Frame::Cancel`](super::Frame::Cancel).
    pub const CANCEL: u8 = 0x23;
    /// [`Frame::Subscribe`](super::Frame::Subscribe).
    pub const SUBSCRIBE: u8 = 0x30;
    /// [`Frame::Subscribed`](super::Frame::Subscribed).
    pub const SUBSCRIBED: u8 = 0x31;
    /// [`Frame::Unsubscribe`](super::Frame::Unsubscribe).
    pub const UNSUBSCRIBE: u8 = 0x32;
    /// [`Frame::Report`](super::Frame::Report).
    pub const REPORT: u8 = 0x33;
    /// [`Frame::Targeted`](super::Frame::Targeted).
    pub const TARGETED: u8 = 0x34;
    /// [`Frame::Missed`](super::Frame::Missed).
    pub const MISSED: u8 = 0x35;
}

/// Which end of a link a process is: the one that connected or the one that accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The connecting side; sends its HELLO first. On the wire: `"client"`.
    Client,
    /// The accepting side; answers the client's HELLO. On the wire: `"server"`.
    Server,
}

impl Role {
    /// The wire spelling: `"client"` or `"server"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }

    /// The role spelled `s` on the wire, if any.
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Self::Client),
            "server" => Some(Self::Server),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first frame each side sends: who it is and how it wants the link run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
    pub version: u16,
    /// Whether the sender connected or accepted.
    pub role: Role,
    /// The exchange group the sender belongs to; both sides must be in the same group.
    pub group: Text,
    /// The sender's process identity, unique within the group.
    pub process: Text,
    /// Distinguishes successive runs of the same process identity (e.g. its start time), so
    /// a peer can tell a restart from a reconnection.
    pub incarnation: u64,
    /// How often the sender sends HEARTBEAT when otherwise idle, in milliseconds.
    pub heartbeat_ms: u32,
    /// The largest frame body the sender accepts, in bytes.
    pub max_frame: u32,
    /// Extension options, in the order received. Unknown options are ignored.
    pub options: Vec<(Text, Text)>,
}

/// Why a link is being closed, carried by CLOSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1: orderly shutdown.
    Normal,
    /// 2: the peer sent something this side could not decode or did not expect.
    ProtocolError,
    /// 3: the HELLO carried a protocol version this side does not speak.
    VersionMismatch,
    /// 4: the HELLO named a different exchange group.
    GroupMismatch,
    /// 5: the peer's address is not allowed to join.
    NotAuthorised,
    /// 6: another link between the same two processes survives instead of this one.
    DuplicateLink,
    /// 7: the handshake did not complete in time.
    HandshakeTimeout,
    /// 8: nothing was received from the peer for too long.
    HeartbeatTimeout,
    /// 9: the peer sent a frame over the agreed limit.
    FrameTooLarge,
    /// 10: the peer did not read fast enough and the outbound queue overflowed.
    SlowConsumer,
    /// 11: the peer claims this side's own process identity.
    IdentityConflict,
    /// 12: the receiver already has as many connections as it accepts (handshakes in
    /// progress included).
    TooManyConnections,
    /// 13: this port speaks netsvc over TLS only, and the peer sent plaintext (the CLOSE
    /// is sent in plaintext, so that the peer can read it).
    TlsRequired,
    /// Any other code; [`CloseCode::from_code`] never produces this for 1 to 13.
    Other(u16),
}

impl CloseCode {
    /// The numeric code sent on the wire.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1,
            Self::ProtocolError => 2,
            Self::VersionMismatch => 3,
            Self::GroupMismatch => 4,
            Self::NotAuthorised => 5,
            Self::DuplicateLink => 6,
            Self::HandshakeTimeout => 7,
            Self::HeartbeatTimeout => 8,
            Self::FrameTooLarge => 9,
            Self::SlowConsumer => 10,
            Self::IdentityConflict => 11,
            Self::TooManyConnections => 12,
            Self::TlsRequired => 13,
            Self::Other(code) => code,
        }
    }

    /// The close code numbered `code` on the wire.
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::Normal,
            2 => Self::ProtocolError,
            3 => Self::VersionMismatch,
            4 => Self::GroupMismatch,
            5 => Self::NotAuthorised,
            6 => Self::DuplicateLink,
            7 => Self::HandshakeTimeout,
            8 => Self::HeartbeatTimeout,
            9 => Self::FrameTooLarge,
            10 => Self::SlowConsumer,
            11 => Self::IdentityConflict,
            12 => Self::TooManyConnections,
            13 => Self::TlsRequired,
            other => Self::Other(other),
        }
    }
}

/// Short lowercase words, e.g. `duplicate link`; unknown codes as `close code 42`.
impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Normal => "normal",
            Self::ProtocolError => "protocol error",
            Self::VersionMismatch => "version mismatch",
            Self::GroupMismatch => "group mismatch",
            Self::NotAuthorised => "not authorised",
            Self::DuplicateLink => "duplicate link",
            Self::HandshakeTimeout => "handshake timeout",
            Self::HeartbeatTimeout => "heartbeat timeout",
            Self::FrameTooLarge => "frame too large",
            Self::SlowConsumer => "slow consumer",
            Self::IdentityConflict => "identity conflict",
            Self::TooManyConnections => "too many connections",
            Self::TlsRequired => "TLS required",
            Self::Other(code) => return write!(f, "close code {code}"),
        })
    }
}

/// Why a service was withdrawn, as WITHDRAW carries it (PROTOCOL.md §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WithdrawCode {
    /// 0: withdrawn by its owner.
    Owner,
    /// 1: the owning process exited.
    ProcessExit,
    /// 2: the connection it was known through was lost.
    ConnectionLost,
    /// 3: the receiving hub refused the announcement: the announcer may not provide a
    /// service of that name (sent back to the announcer only; docs/SECURITY.md).
    Refused,
}

impl WithdrawCode {
    /// The number sent on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Owner => 0,
            Self::ProcessExit => 1,
            Self::ConnectionLost => 2,
            Self::Refused => 3,
        }
    }

    /// The reason numbered `code` on the wire; unknown numbers read as [`Self::Owner`], as
    /// the protocol asks of receivers.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::ProcessExit,
            2 => Self::ConnectionLost,
            3 => Self::Refused,
            _ => Self::Owner,
        }
    }
}

/// One message of the exchange protocol. `docs/PROTOCOL.md` specifies each kind's fields and
/// when it is sent.
///
/// Payload fields (`args`, `result`, `payload`) hold a MessagePack-encoded netsvc
/// [`Value`](crate::Value) that the codec does not look into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a link (kind 0x01).
    Hello(Hello),
    /// Closes a link, saying why (kind 0x02).
    Close(Close),
    /// Sent when the link has otherwise been idle, to prove the sender is alive (kind 0x03).
    Heartbeat,
    /// Sent once after the handshake, when the sender has announced every service it exports
    /// on the link (kind 0x04): the receiver then knows the peer's whole registry.
    Synced,
    /// Announces a service, or its new state, to the peer (kind 0x10).
    Service(Service),
    /// The sender no longer has a route to the service (kind 0x11).
    Withdraw(Withdraw),
    /// On a link whose HELLOs agreed on an interest-scoped registry: the services the
    /// sender wants to be told of, in addition to those it asked for before (kind 0x12).
    Interest(Interest),
    /// Every service an INTEREST of that sequence number admitted has been sent (kind 0x13).
    Interested(Interested),
    /// Calls a method of a service (kind 0x20).
    Request(Request),
    /// The successful result of a request (kind 0x21).
    Response(Response),
    /// The failure of a request (kind 0x22).
    Failure(Failure),
    /// The caller no longer waits for the response (kind 0x23).
    Cancel(Cancel),
    /// Asks for a publisher's reports matching a pattern (kind 0x30).
    Subscribe(Subscribe),
    /// Acknowledges a SUBSCRIBE, after the cached reports that matched it (kind 0x31).
    Subscribed(Subscribed),
    /// Ends a subscription (kind 0x32).
    Unsubscribe(Unsubscribe),
    /// A live report, sent once per link whatever the number of matching subscriptions
    /// behind it (kind 0x33).
    Report(Report),
    /// A report for one subscription: a cached report replayed on subscription, or a report
    /// sent to one subscriber only (kind 0x34).
    Targeted(Targeted),
    /// Tells the peer that reports of `publisher` queued for it were coalesced or dropped
    /// because it read too slowly (kind 0x35).
    Missed(Missed),
}

/// Closes a link, saying why (kind 0x02).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Why the link is closed.
    pub code: CloseCode,
    /// Free-form explanation for logs.
    pub reason: Text,
}

/// Announces a service, or its new state, to the peer (kind 0x10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service's address, unique within the exchange group.
    pub address: Text,
    /// The service's name.
    pub name: Text,
    /// The group the service is visible to: `*` for everyone, a group name for that group
    /// only; `""` (local only) is never sent.
    pub audience: Text,
    /// The service groups the service has joined.
    pub groups: Vec<Text>,
    /// Incremented at the origin on every change; the highest version wins.
    pub version: u64,
    /// The process identities the announcement went through, origin first, sender last.
    pub path: Vec<Text>,
}

/// The sender no longer has a route to the service (kind 0x11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdraw {
    /// The withdrawn service's address.
    pub address: Text,
    /// 0: withdrawn by its owner, 1: the owning process exited, 2: connection lost.
    pub reason: u8,
}

/// The services a process on an interest-scoped link wants to be told of, in addition to
/// those it asked for before (kind 0x12; PROTOCOL.md §8.2). Interest only grows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest {
    /// Chosen by the sender, increasing; the answer's [`Interested`] carries it back.
    pub seq: u64,
    /// Every service, now and later: the link becomes a full one.
    pub all: bool,
    /// Service names: every service of each name, now and later.
    pub names: Vec<Text>,
}

/// Every SERVICE that the INTEREST with this sequence number admitted has been sent before
/// this frame (kind 0x13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interested {
    /// The INTEREST's sequence number.
    pub seq: u64,
}

/// Calls a method of a service (kind 0x20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The conversation id, chosen by the sender, scoped to the link and direction.
    pub conv: u64,
    /// The address of the service called.
    pub to: Text,
    /// The address of the calling service, if the caller is one.
    pub from: Option<Text>,
    /// The method name.
    pub method: Text,
    /// How long the caller waits, in milliseconds; 0 means no limit.
    pub timeout_ms: u64,
    /// The MessagePack-encoded arguments.
    pub args: Bytes,
    /// The user the caller logged in as, written by the hub it logged in to (PROTOCOL.md
    /// §4.6): a trailing element, present only when set.
    pub user: Option<Text>,
}

/// The successful result of a request (kind 0x21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The conversation id of the request answered.
    pub conv: u64,
    /// The MessagePack-encoded result.
    pub result: Bytes,
}

/// The failure of a request (kind 0x22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The conversation id of the request answered.
    pub conv: u64,
    /// The error code (as in the original system; may be negative).
    pub error: i32,
    /// A human-readable description.
    pub description: Text,
    /// Where the error arose (e.g. `netsvc`, or the service's own domain).
    pub origin: Text,
    /// Further details, e.g. a traceback.
    pub details: Text,
    /// The service was withdrawn before it responded: the request may or may not have
    /// been carried out (error 57 in the original's words). On the wire, a sixth element
    /// `true` when set and nothing otherwise (absent means false), like REPORT's `paced`.
    pub withdrawn: bool,
}

/// The caller no longer waits for the response (kind 0x23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// The conversation id of the request cancelled.
    pub conv: u64,
}

/// Asks for a publisher's reports matching a pattern (kind 0x30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The subscription id, chosen by the sender, scoped to the link and direction.
    pub sid: u64,
    /// The address of the publishing service.
    pub publisher: Text,
    /// The address of the subscribing service.
    pub subscriber: Text,
    /// The subject pattern.
    pub pattern: Text,
}

/// Acknowledges a SUBSCRIBE, after the cached reports that matched it (kind 0x31).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The subscription id of the SUBSCRIBE acknowledged.
    pub sid: u64,
    /// The publisher's process does not serve it (it cannot see the subscriber, the pattern
    /// is invalid, the publisher is gone): no report will follow for it. On the wire, a
    /// second element `true` when set and nothing otherwise (absent means served).
    pub refused: bool,
}

/// Ends a subscription (kind 0x32).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The subscription id to end.
    pub sid: u64,
}

/// A live report, sent once per link whatever the number of matching subscriptions
/// behind it (kind 0x33).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The address of the publishing service.
    pub publisher: Text,
    /// The report's subject.
    pub subject: Text,
    /// The publisher's sequence number, increasing with each publish.
    pub seq: u64,
    /// The MessagePack-encoded report content.
    pub payload: Bytes,
    /// The publisher waits for congestion instead of having its reports coalesced
    /// (`publish_paced`): a hub stops reading the link this came on while a link it
    /// forwards it to is congested. On the wire, a fifth element `true` when set and
    /// nothing otherwise (absent means false).
    pub paced: bool,
}

/// A report for one subscription: a cached report replayed on subscription, or a report
/// sent to one subscriber only (kind 0x34).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targeted {
    /// The subscription the report is for.
    pub sid: u64,
    /// The report's subject.
    pub subject: Text,
    /// The publisher's sequence number.
    pub seq: u64,
    /// The subscriber's pattern the subject matched; `None` if it matched none.
    pub pattern: Option<Text>,
    /// `true` for a report sent to one subscriber, `false` for a replayed cached report.
    pub targeted: bool,
    /// The MessagePack-encoded report content.
    pub payload: Bytes,
}

/// Tells the peer that reports of `publisher` queued for it were coalesced or dropped
/// because it read too slowly (kind 0x35).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// The publisher whose reports were lost.
    pub publisher: Text,
    /// How many.
    pub count: u64,
}

impl Frame {
    /// The kind number that opens the frame's body; see [`kind`].
    pub fn kind(&self) -> u8 {
        match self {
            Self::Hello(_) => kind::HELLO,
            Self::Close(_) => kind::CLOSE,
            Self::Heartbeat => kind::HEARTBEAT,
            Self::Synced => kind::SYNCED,
            Self::Service(_) => kind::SERVICE,
            Self::Withdraw(_) => kind::WITHDRAW,
            Self::Interest(_) => kind::INTEREST,
            Self::Interested(_) => kind::INTERESTED,
            Self::Request(_) => kind::REQUEST,
            Self::Response(_) => kind::RESPONSE,
            Self::Failure(_) => kind::FAILURE,
            Self::Cancel(_) => kind::CANCEL,
            Self::Subscribe(_) => kind::SUBSCRIBE,
            Self::Subscribed(_) => kind::SUBSCRIBED,
            Self::Unsubscribe(_) => kind::UNSUBSCRIBE,
            Self::Report(_) => kind::REPORT,
            Self::Targeted(_) => kind::TARGETED,
            Self::Missed(_) => kind::MISSED,
        }
    }

    /// The kind's name in capitals, e.g. `"HELLO"`, for logs and error messages.
    pub fn name(&self) -> &'static str {
        // Every kind of a Frame is known, so the fallback never shows.
        kind_name(self.kind()).unwrap_or("UNKNOWN")
    }
}

/// The name of frame kind `kind`, if it is one this crate knows.
pub(super) fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        kind::HELLO => "HELLO",
        kind::CLOSE => "CLOSE",
        kind::HEARTBEAT => "HEARTBEAT",
        kind::SYNCED => "SYNCED",
        kind::SERVICE => "SERVICE",
        kind::WITHDRAW => "WITHDRAW",
        kind::INTEREST => "INTEREST",
        kind::INTERESTED => "INTERESTED",
        kind::REQUEST => "REQUEST",
        kind::RESPONSE => "RESPONSE",
        kind::FAILURE => "FAILURE",
        kind::CANCEL => "CANCEL",
        kind::SUBSCRIBE => "SUBSCRIBE",
        kind::SUBSCRIBED => "SUBSCRIBED",
        kind::UNSUBSCRIBE => "UNSUBSCRIBE",
        kind::REPORT => "REPORT",
        kind::TARGETED => "TARGETED",
        kind::MISSED => "MISSED",
        _ => return None,
    })
}

/// Why bytes received could not be decoded as a frame. Every error is fatal for the
/// connection: the stream cannot be resynchronised after it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The length prefix announces a body larger than the decoder's limit.
    #[error("frame of {size} bytes is over the limit of {limit}")]
    FrameTooLarge {
        /// The announced body size in bytes.
        size: usize,
        /// The decoder's limit in bytes.
        limit: usize,
    },
    /// The body opens with a kind number this crate does not know.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The body is not a valid frame; the message says what was wrong where, e.g.
    /// `REQUEST field 2 (to): expected a string, found an integer` (fields are numbered by
    /// their position in the body array, the kind being field 0).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A string field is not valid UTF-8.
    #[error("invalid UTF-8 in a string field")]
    InvalidUtf8,
    /// A HELLO does not carry the `"netsvc"` magic: the peer is not speaking this protocol.
    #[error("HELLO without the \"netsvc\" magic")]
    BadMagic,
    /// The length prefix is zero.
    #[error("zero-length frame")]
    Empty,
}

impl Withdraw {
    /// The reason, typed (unknown codes read as withdrawn by the owner).
    pub fn code(&self) -> WithdrawCode {
        WithdrawCode::from_code(self.reason)
    }
}
