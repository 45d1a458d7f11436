//! How a link's byte stream travels as NATS messages, without IO: the subjects, and the
//! sequence that turns a lost message into a lost link.
//!
//! NATS carries messages, at most once: a slow consumer's messages are dropped, and a
//! client that reconnects to another node misses what was published meanwhile. A netsvc
//! link needs every byte in order, so each direction of a link is a sequence of messages
//! numbered from 1; a receiver that sees anything but the next number ends the link, as a
//! TCP reset would (its services are withdrawn as connection-lost, and the dialling hub
//! links again with a new session and a new HELLO). The bytes themselves are the native
//! protocol's frames, so a frame longer than the cluster's `max_payload` simply spans
//! several messages, and a batch of small frames travels in one.
//!
//! A message is `[kind: u8][sequence: u64 big-endian][bytes]`.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of a message before its data.
pub(crate) const HEADER: usize = 9;

/// Data: the next bytes of the stream.
const DATA: u8 = 0;
/// The sender ended the stream in order (its link ended).
const END: u8 = 1;

/// The sending half of one direction of a link.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    sent: u64,
}

impl Outbound {
    /// The next message carrying `data`.
    pub(crate) fn data(&mut self, data: &[u8]) -> Bytes {
        self.message(DATA, data)
    }

    /// The message that ends the stream.
    pub(crate) fn end(&mut self) -> Bytes {
        self.message(END, &[])
    }

    fn message(&mut self, kind: u8, data: &[u8]) -> Bytes {
        self.sent += 1;
        let mut out = BytesMut::with_capacity(HEADER + data.len());
        out.put_u8(kind);
        out.put_u64(self.sent);
        out.put_slice(data);
        out.freeze()
    }
}

/// What a received message means for the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// The next bytes.
    Data(Bytes),
    /// The sender ended the stream.
    End,
    /// A message is missing (or came twice, or is not ours): the stream is broken.
    Broken(String),
}

/// The receiving half of one direction of a link.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    received: u64,
}

impl Inbound {
    /// Takes the next message; anything but the next in sequence breaks the stream.
    pub(crate) fn accept(&mut self, message: Bytes) -> Received {
        if message.len() < HEADER {
            return Received::Broken(format!("a {}-byte message", message.len()));
        }
        let kind = message[0];
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&message[1..HEADER]);
        let sequence = u64::from_be_bytes(sequence);
        let expected = self.received + 1;
        if sequence != expected {
            return Received::Broken(format!(
                "message {sequence} where {expected} was due (NATS dropped {})",
                if sequence > expected {
                    "some"
                } else {
                    "none, but repeated one"
                }
            ));
        }
        self.received = sequence;
        match kind {
            DATA => Received::Data(message.slice(HEADER..)),
            END => Received::End,
            other => Received::Broken(format!("a message of unknown kind {other}")),
        }
    }
}

/// The subjects of one exchange on a NATS cluster, under a prefix.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    /// `<prefix>.<exchange group>`, both as tokens.
    base: String,
}

impl Subjects {
    pub(crate) fn new(prefix: &str, group: &str) -> Self {
        Self {
            base: format!("{}.{}", token(prefix), token(group)),
        }
    }

    /// Where every hub of the exchange says, at intervals, that it is there.
    pub(crate) fn presence(&self) -> String {
        format!("{}.present", self.base)
    }

    /// Where a hub takes requests to open a link to it.
    pub(crate) fn open(&self, hub: &str) -> String {
        format!("{}.open.{}", self.base, token(hub))
    }

    /// One direction of one link: from the hub that dialled, or to it.
    pub(crate) fn link(&self, session: &str, from_dialler: bool) -> String {
        let direction = if from_dialler { "d" } else { "a" };
        format!("{}.link.{}.{direction}", self.base, token(session))
    }
}

/// `text` as one NATS subject token: letters, digits, `-`, `_` and `:` as they are, every
/// other byte as `%XX` (so a process identity such as `host.example:42` or an exchange
/// group with a dot stays one token, and no two texts share one).
pub(crate) fn token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_arrives_in_order_and_ends() {
        let (mut tx, mut rx) = (Outbound::default(), Inbound::default());
        for chunk in [&b"HELLO"[..], b"", b"more"] {
            assert_eq!(
                rx.accept(tx.data(chunk)),
                Received::Data(Bytes::copy_from_slice(chunk))
            );
        }
        assert_eq!(rx.accept(tx.end()), Received::End);
    }

    #[test]
    fn a_missing_repeated_or_foreign_message_breaks_the_stream() {
        let (mut tx, mut rx) = (Outbound::default(), Inbound::default());
        let first = tx.data(b"a");
        let _lost = tx.data(b"b");
        let third = tx.data(b"c");
        assert_eq!(
            rx.accept(first.clone()),
            Received::Data(Bytes::from_static(b"a"))
        );
        assert!(matches!(rx.accept(third), Received::Broken(why) if why.contains("dropped some")));

        let mut rx = Inbound::default();
        assert!(matches!(rx.accept(first.clone()), Received::Data(_)));
        assert!(matches!(rx.accept(first), Received::Broken(why) if why.contains("repeated")));

        let mut rx = Inbound::default();
        assert!(matches!(
            rx.accept(Bytes::from_static(b"short")),
            Received::Broken(_)
        ));
        let mut odd = BytesMut::from(&tx.data(b"x")[..]);
        odd[0] = 7;
        odd[1..HEADER].copy_from_slice(&1u64.to_be_bytes());
        assert!(matches!(rx.accept(odd.freeze()), Received::Broken(why) if why.contains("kind 7")));
    }

    #[test]
    fn names_become_single_distinct_tokens() {
        assert_eq!(token("vm:1234"), "vm:1234");
        assert_eq!(token("host.example:42"), "host%2Eexample:42");
        assert_eq!(token("a*b>c d"), "a%2Ab%3Ec%20d");
        assert_eq!(token(""), "%");
        assert_ne!(token("a.b"), token("a%2Eb"));
        let s = Subjects::new("netsvc", "default");
        assert_eq!(s.open("h.1:2"), "netsvc.default.open.h%2E1:2");
        assert_eq!(s.link("ab12", true), "netsvc.default.link.ab12.d");
        assert_eq!(s.presence(), "netsvc.default.present");
    }
}
