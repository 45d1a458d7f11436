//! Replaying captured OSE exchanges: the frames an original OSE process sent, read from
//! `vectors/`, sent to a live netsvc bridge with the bridge's identifiers put in; and the
//! bridge's frames checked against the ones the original sent in the same place.
//!
//! Identifiers (`$EP?…`, `$O?…`, `$ID?…`) differ from run to run, so the check pairs each
//! identifier of a recorded frame with the one in the same place of the live frame and
//! holds the pairing to the end of the test: a live frame must use the same identifier
//! wherever the recording used the same one. Everything else is compared exactly, except
//! what the original itself makes differently from run to run (a process's `host:pid`),
//! and payloads, which are compared as values (the original types a C++ `long` as
//! `xsd:long` where netsvc says `xsd:int`; both read back as the same integer).

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use netsvc::Value;
use netsvc_gateway::codec::{XmlLimits, netrpc};
use netsvc_ose::message::subjects;
use netsvc_ose::{Envelope, FrameDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for any one frame.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// The frames of a captured connection: what the connecting side sent, and what the
/// accepting side sent.
pub(crate) struct Vector {
    pub(crate) client: Vec<Envelope>,
    pub(crate) server: Vec<Envelope>,
}

/// Loads `vectors/NAME/{c2s,s2c}.bin`.
pub(crate) fn vector(name: &str) -> Vector {
    // Spelled from the workspace so that the CLI's tests, which include this module, find
    // the same files.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../netsvc-ose/vectors")
        .join(name);
    let frames = |file: &str| {
        let bytes = std::fs::read(dir.join(file))
            .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
        let mut decoder = FrameDecoder::default();
        decoder.extend(&bytes);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame().expect("a captured frame decodes") {
            frames.push(frame);
        }
        assert!(!decoder.has_partial(), "{file} ends inside a frame");
        frames
    };
    Vector {
        client: frames("c2s.bin"),
        server: frames("s2c.bin"),
    }
}

/// The `nth` recorded frame of `subject`.
pub(crate) fn nth_of(frames: &[Envelope], subject: &str, nth: usize) -> Envelope {
    frames
        .iter()
        .filter(|f| f.subject == subject)
        .nth(nth)
        .unwrap_or_else(|| panic!("no recorded {subject} #{nth}"))
        .clone()
}

/// The pairing of recorded identifiers with live ones.
#[derive(Debug, Default)]
pub(crate) struct Ids(HashMap<String, String>);

impl Ids {
    /// Where the identifiers of `text` are, in order.
    fn spans(text: &str) -> Vec<std::ops::Range<usize>> {
        let mut spans = Vec::new();
        let mut from = 0;
        while let Some(at) = ["$EP?", "$O?", "$ID?"]
            .iter()
            .filter_map(|p| text[from..].find(p).map(|i| from + i))
            .min()
        {
            let body = at + text[at..].find('?').map_or(0, |q| q + 1);
            let end = text[body..]
                .find(|c: char| !(c.is_ascii_hexdigit() || c == ':'))
                .map_or(text.len(), |i| body + i);
            spans.push(at..end);
            from = end;
        }
        spans
    }

    /// The identifiers in `text`, in order.
    fn tokens(text: &str) -> Vec<&str> {
        Self::spans(text).into_iter().map(|r| &text[r]).collect()
    }

    /// Pairs the identifiers of `recorded` with those of `live` and checks that the two
    /// texts are then the same.
    pub(crate) fn learn(&mut self, what: &str, recorded: &str, live: &str) {
        let (r, l) = (Self::tokens(recorded), Self::tokens(live));
        assert_eq!(
            r.len(),
            l.len(),
            "{what}: recorded {recorded:?}, live {live:?}"
        );
        for (r, l) in r.into_iter().zip(l) {
            let known = self.0.entry(r.to_owned()).or_insert_with(|| l.to_owned());
            assert_eq!(
                known, l,
                "{what}: {r} was {known} before, now {l} (recorded {recorded:?}, live {live:?})"
            );
        }
        assert_eq!(self.apply(recorded), live, "{what}");
    }

    /// `text` with the recorded identifiers already paired replaced by their live ones.
    pub(crate) fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for span in Self::spans(text) {
            out.push_str(&text[last..span.start]);
            let token = &text[span.clone()];
            out.push_str(self.0.get(token).map_or(token, String::as_str));
            last = span.end;
        }
        out.push_str(&text[last..]);
        out
    }

    /// A recorded frame to send now: the identifiers of the other side replaced.
    pub(crate) fn frame(&self, recorded: &Envelope) -> Envelope {
        let content = match std::str::from_utf8(&recorded.content) {
            Ok(text) => self.apply(text).into_bytes().into(),
            Err(_) => recorded.content.clone(),
        };
        Envelope {
            to: self.apply(&recorded.to),
            from: self.apply(&recorded.from),
            conversation: self.apply(&recorded.conversation),
            content,
            ..recorded.clone()
        }
    }

    /// The live identifier paired with a recorded one.
    pub(crate) fn live(&self, recorded: &str) -> &str {
        self.0
            .get(recorded)
            .unwrap_or_else(|| panic!("{recorded} not seen yet"))
    }
}

/// Checks a live frame against the recorded one in its place.
pub(crate) fn check(ids: &mut Ids, recorded: &Envelope, live: &Envelope) {
    let what = &recorded.subject;
    assert_eq!(live.subject, recorded.subject, "subject");
    ids.learn(&format!("{what} to"), &recorded.to, &live.to);
    ids.learn(&format!("{what} from"), &recorded.from, &live.from);
    ids.learn(
        &format!("{what} conversation"),
        &recorded.conversation,
        &live.conversation,
    );
    assert_eq!(live.header, recorded.header, "{what} header");
    assert_eq!(live.sequence, recorded.sequence, "{what} sequence number");
    assert_eq!(
        live.content_type, recorded.content_type,
        "{what} content type"
    );
    assert_eq!(live.event_type, recorded.event_type, "{what} event type");
    match recorded.subject.as_str() {
        subjects::ANNOUNCE_CLIENT | subjects::ANNOUNCE_SERVER => {
            // `host:pid` of whichever process sent it.
            let text = std::str::from_utf8(&live.content).expect("UTF-8");
            let (host, pid) = text.rsplit_once(':').expect("host:pid");
            assert!(!host.is_empty() && pid.parse::<u32>().is_ok(), "{text:?}");
        }
        subjects::RESPONSE | subjects::REPORT | subjects::REQUEST => {
            assert_eq!(payload(live), payload(recorded), "{what} payload");
        }
        subjects::FAILURE => {
            // The code and its description; who raised it (the probe, netsvc) and its
            // free text differ.
            let (live, recorded) = (payload(live), payload(recorded));
            assert_eq!(field(&live, "error"), field(&recorded, "error"), "error");
            assert_eq!(
                field(&live, "description"),
                field(&recorded, "description"),
                "description"
            );
        }
        _ => ids.learn(
            &format!("{what} content"),
            std::str::from_utf8(&recorded.content).expect("UTF-8"),
            std::str::from_utf8(&live.content).expect("UTF-8"),
        ),
    }
}

/// A frame's NET-RPC payload as a value.
pub(crate) fn payload(frame: &Envelope) -> Value {
    netrpc::decode(&frame.content, XmlLimits::DEFAULT)
        .unwrap_or_else(|e| panic!("{} payload: {e}", frame.subject))
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Map(map) => map.get(name),
        _ => None,
    }
}

/// An address received from the bridge, as the test's side sends to it: the bridge's
/// endpoint id taken off its front.
pub(crate) fn strip(address: &str, endpoint: &str) -> String {
    netsvc_ose::message::strip_endpoint(address, endpoint).to_owned()
}

/// The test's end of an OSE connection.
pub(crate) struct Peer {
    stream: TcpStream,
    decoder: FrameDecoder,
}

impl Peer {
    pub(crate) async fn connect(address: SocketAddr) -> Self {
        Self::new(TcpStream::connect(address).await.expect("connect"))
    }

    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            decoder: FrameDecoder::default(),
        }
    }

    pub(crate) async fn send(&mut self, frame: &Envelope) {
        self.stream
            .write_all(&frame.to_bytes())
            .await
            .expect("send a frame");
    }

    pub(crate) async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send bytes");
    }

    /// The next frame, keep-alives included; `None` if the connection closed.
    pub(crate) async fn next_any(&mut self) -> Option<Envelope> {
        loop {
            if let Some(frame) = self.decoder.next_frame().expect("a frame from netsvc") {
                return Some(frame);
            }
            let read =
                tokio::time::timeout(DEADLINE, self.stream.read_buf(self.decoder.buffer_mut()))
                    .await
                    .expect("a frame within the deadline")
                    .expect("read");
            if read == 0 {
                return None;
            }
        }
    }

    /// The next frame other than a keep-alive of the bridge's own.
    pub(crate) async fn next(&mut self) -> Envelope {
        loop {
            let frame = self.next_any().await.expect("the connection stays up");
            if frame.subject != subjects::KEEP_ALIVE {
                return frame;
            }
        }
    }

    /// The next frame of `subject`, skipping others (announcements of services this test
    /// does not look at, say).
    pub(crate) async fn next_of(&mut self, subject: &str) -> Envelope {
        loop {
            let frame = self.next().await;
            if frame.subject == subject {
                return frame;
            }
        }
    }

    /// Reads the next frame and checks it against `recorded`.
    pub(crate) async fn expect(&mut self, ids: &mut Ids, recorded: &Envelope) -> Envelope {
        let live = self.next().await;
        check(ids, recorded, &live);
        live
    }

    /// Reads as many frames as `recorded` holds, in whatever order they come, and checks
    /// each against the recorded frame of its subject.
    pub(crate) async fn expect_unordered(&mut self, ids: &mut Ids, recorded: &[&Envelope]) {
        let mut waiting: Vec<&Envelope> = recorded.to_vec();
        while !waiting.is_empty() {
            let live = self.next().await;
            let at = waiting
                .iter()
                .position(|r| r.subject == live.subject)
                .unwrap_or_else(|| panic!("unexpected {live:?}"));
            check(ids, waiting.remove(at), &live);
        }
    }

    /// Waits until the bridge closes the connection (frames before that are skipped).
    pub(crate) async fn closed(&mut self) {
        while self.next_any().await.is_some() {}
    }
}
