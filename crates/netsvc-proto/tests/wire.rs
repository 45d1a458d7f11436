//! Property tests and committed test vectors for the wire codec.
//!
//! The vectors in `tests/vectors/frames.txt` pin the encoding byte for byte, so an
//! accidental change to it fails here; `docs/PROTOCOL.md` quotes them. After a deliberate
//! change, regenerate the file with
//! `NETSVC_BLESS=1 cargo test -p netsvc-proto --test wire` and review the diff.

// The clippy.toml allowance covers `#[test]` functions only, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use netsvc_proto::Value;
use netsvc_proto::value::{self, Date, DateTime, Limits, Time, json::to_json};
use netsvc_proto::wire::{
    CloseCode, DEFAULT_MAX_FRAME, Decoder, Frame, Hello, PROTOCOL_VERSION, Role, Text, decode_body,
    encode, frame,
};
use proptest::prelude::*;
use serde_json::Value as Json;

const VECTORS: &str = "tests/vectors/frames.txt";

fn t(s: &str) -> Text {
    Text::from(s)
}

fn payload(value: &Value) -> Bytes {
    Bytes::from(value::encode(value, &Limits::DEFAULT).unwrap())
}

fn to_bytes(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode(frame, &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Test vectors
// ---------------------------------------------------------------------------------------

/// The vectors: name, description and frame.
fn vectors() -> Vec<(&'static str, &'static str, Frame)> {
    let hi = Value::List(vec![Value::from("hi")]);
    let quote = Value::Map(BTreeMap::from([
        ("last".to_owned(), Value::Float(101.25)),
        (
            "at".to_owned(),
            Value::DateTime(
                DateTime::new(
                    Date::new(2026, 1, 15).unwrap(),
                    Time::new(9, 30, 0, 0).unwrap(),
                    Some(0),
                )
                .unwrap(),
            ),
        ),
    ]));
    vec![
        (
            "hello-client",
            "The HELLO a client sends on connecting: group \"default\", heartbeat every second, \
             frames up to 20 MiB, no options.",
            Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: Role::Client,
                group: t("default"),
                process: t("host-a:4242"),
                incarnation: 1_767_225_600_000,
                heartbeat_ms: 1000,
                max_frame: 20 * 1024 * 1024,
                options: vec![],
            }),
        ),
        (
            "hello-server",
            "The accepting exchange's answering HELLO, with one option.",
            Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: Role::Server,
                group: t("default"),
                process: t("hub:1"),
                incarnation: 7,
                heartbeat_ms: 1000,
                max_frame: 20 * 1024 * 1024,
                options: vec![(t("agent"), t("netsvc/0.1"))],
            }),
        ),
        (
            "close-duplicate-link",
            "CLOSE of the losing link of a duplicate pair (code 6).",
            Frame::Close(frame::Close {
                code: CloseCode::DuplicateLink,
                reason: t("duplicate link"),
            }),
        ),
        (
            "heartbeat",
            "HEARTBEAT: the smallest frame.",
            Frame::Heartbeat,
        ),
        (
            "synced",
            "SYNCED: the sender has announced its whole registry on this link.",
            Frame::Synced,
        ),
        (
            "service-echo",
            "SERVICE announcing an \"echo\" service visible to every group, one hop from its \
             origin.",
            Frame::Service(frame::Service {
                address: t("host-a:4242/1"),
                name: t("echo"),
                audience: t("*"),
                groups: vec![t("tools")],
                version: 1,
                path: vec![t("host-a:4242"), t("hub:1")],
            }),
        ),
        (
            "withdraw",
            "WITHDRAW of that service because its process exited (reason 1).",
            Frame::Withdraw(frame::Withdraw {
                address: t("host-a:4242/1"),
                reason: 1,
            }),
        ),
        (
            "interest",
            "INTEREST on an interest-scoped link: the services named \"echo\" and \"clock\", \
             now and later.",
            Frame::Interest(frame::Interest {
                seq: 1,
                all: false,
                names: vec![t("echo"), t("clock")],
            }),
        ),
        (
            "interested",
            "INTERESTED: every SERVICE that INTEREST 1 admitted has been sent.",
            Frame::Interested(frame::Interested { seq: 1 }),
        ),
        (
            "request-echo",
            "REQUEST calling echo(\"hi\") with a 5 s timeout; the caller is not a service.",
            Frame::Request(frame::Request {
                conv: 1,
                to: t("host-a:4242/1"),
                from: None,
                method: t("echo"),
                timeout_ms: 5000,
                args: payload(&hi),
                user: None,
            }),
        ),
        (
            "request-relayed-with-user",
            "REQUEST as a hub relays it: from a calling service, with the user the caller \
             logged in as (a trailing seventh element).",
            Frame::Request(frame::Request {
                conv: 2,
                to: t("3@host-a:4242!echo"),
                from: Some(t("1@host-b:77!")),
                method: t("echo"),
                timeout_ms: 0,
                args: payload(&hi),
                user: Some(t("alice")),
            }),
        ),
        (
            "response-echo",
            "RESPONSE to that request: the string \"hi\".",
            Frame::Response(frame::Response {
                conv: 1,
                result: payload(&Value::from("hi")),
            }),
        ),
        (
            "failure-unknown-address",
            "FAILURE for a request to an unknown address (error 46).",
            Frame::Failure(frame::Failure {
                conv: 2,
                error: 46,
                description: t("No such service."),
                origin: t("netsvc"),
                details: t(""),
                withdrawn: false,
            }),
        ),
        (
            "failure-negative",
            "FAILURE with a negative, application-defined error code.",
            Frame::Failure(frame::Failure {
                conv: 300,
                error: -2,
                description: t("bad"),
                origin: t("app"),
                details: t("trace"),
                withdrawn: false,
            }),
        ),
        (
            "failure-withdrawn",
            "FAILURE 57 of a service withdrawn before it responded: the trailing `withdrawn` element.",
            Frame::Failure(frame::Failure {
                conv: 301,
                error: 57,
                description: t("Application Error"),
                origin: t("netsvc"),
                details: t("Service was withdrawn before response received."),
                withdrawn: true,
            }),
        ),
        (
            "cancel",
            "CANCEL of conversation 2.",
            Frame::Cancel(frame::Cancel { conv: 2 }),
        ),
        (
            "subscribe",
            "SUBSCRIBE from service host-b:1/3 to reports of host-a:4242/2 matching \"quote.*\".",
            Frame::Subscribe(frame::Subscribe {
                sid: 1,
                publisher: t("host-a:4242/2"),
                subscriber: t("host-b:1/3"),
                pattern: t("quote.*"),
            }),
        ),
        (
            "targeted-cached",
            "TARGETED replaying a cached report for subscription 1 (targeted = false).",
            Frame::Targeted(frame::Targeted {
                sid: 1,
                subject: t("quote.ACME"),
                seq: 41,
                pattern: Some(t("quote.*")),
                targeted: false,
                payload: payload(&quote),
            }),
        ),
        (
            "subscribed",
            "SUBSCRIBED: subscription 1 is installed; live reports follow.",
            Frame::Subscribed(frame::Subscribed {
                sid: 1,
                refused: false,
            }),
        ),
        (
            "subscribed-refused",
            "SUBSCRIBED for subscription 2 that the publisher's process does not serve: the \
             trailing `refused` element; no report follows.",
            Frame::Subscribed(frame::Subscribed {
                sid: 2,
                refused: true,
            }),
        ),
        (
            "report",
            "REPORT of a live quote: a map with a float and a UTC date-time (ext 3).",
            Frame::Report(frame::Report {
                publisher: t("host-a:4242/2"),
                subject: t("quote.ACME"),
                seq: 42,
                payload: payload(&quote),
                paced: false,
            }),
        ),
        (
            "report-paced",
            "REPORT from a publisher that waits for congestion (`publish_paced`): a fifth \
             element, true.",
            Frame::Report(frame::Report {
                publisher: t("host-a:4242/2"),
                subject: t("quote.ACME"),
                seq: 43,
                payload: payload(&quote),
                paced: true,
            }),
        ),
        (
            "targeted-direct",
            "TARGETED sent to one subscriber that matched none of its patterns (pattern nil), \
             payload nil.",
            Frame::Targeted(frame::Targeted {
                sid: 1,
                subject: t("notice"),
                seq: 43,
                pattern: None,
                targeted: true,
                payload: payload(&Value::None),
            }),
        ),
        (
            "missed",
            "MISSED: 17 reports of a publisher were coalesced on the way to a slow reader.",
            Frame::Missed(frame::Missed {
                publisher: t("host-a:4242/2"),
                count: 17,
            }),
        ),
        (
            "unsubscribe",
            "UNSUBSCRIBE of subscription 1.",
            Frame::Unsubscribe(frame::Unsubscribe { sid: 1 }),
        ),
    ]
}

/// The frame as JSON with its fields in wire order; payloads show their MessagePack bytes
/// and, for readers, the value they hold in the JSON mapping of `value::json`.
fn frame_json(frame: &Frame) -> String {
    fn text(t: &Text) -> Json {
        Json::String(t.to_string())
    }
    fn opt(t: Option<&Text>) -> Json {
        t.map_or(Json::Null, text)
    }
    fn texts(ts: &[Text]) -> Json {
        Json::Array(ts.iter().map(text).collect())
    }
    fn bin(b: &Bytes) -> Json {
        let value = value::decode(b, &Limits::DEFAULT).unwrap();
        serde_json::json!({"msgpack": hex(b, ""), "value": to_json(&value)})
    }
    let mut fields: Vec<(&str, Json)> = vec![("kind", Json::from(frame.name()))];
    match frame {
        Frame::Hello(h) => {
            fields.extend([
                ("magic", Json::from("netsvc")),
                ("version", Json::from(h.version)),
                ("role", Json::from(h.role.as_str())),
                ("group", text(&h.group)),
                ("process", text(&h.process)),
                ("incarnation", Json::from(h.incarnation)),
                ("heartbeat_ms", Json::from(h.heartbeat_ms)),
                ("max_frame", Json::from(h.max_frame)),
                (
                    "options",
                    Json::Object(
                        h.options
                            .iter()
                            .map(|(k, v)| (k.to_string(), text(v)))
                            .collect(),
                    ),
                ),
            ]);
        }
        Frame::Close(frame::Close { code, reason }) => {
            fields.extend([("code", Json::from(code.code())), ("reason", text(reason))]);
        }
        Frame::Heartbeat | Frame::Synced => {}
        Frame::Interest(frame::Interest { seq, all, names }) => fields.extend([
            ("seq", Json::from(*seq)),
            ("all", Json::from(*all)),
            ("names", texts(names)),
        ]),
        Frame::Interested(frame::Interested { seq }) => fields.push(("seq", Json::from(*seq))),
        Frame::Service(frame::Service {
            address,
            name,
            audience,
            groups,
            version,
            path,
        }) => fields.extend([
            ("address", text(address)),
            ("name", text(name)),
            ("audience", text(audience)),
            ("groups", texts(groups)),
            ("version", Json::from(*version)),
            ("path", texts(path)),
        ]),
        Frame::Withdraw(frame::Withdraw { address, reason }) => {
            fields.extend([("address", text(address)), ("reason", Json::from(*reason))]);
        }
        Frame::Request(frame::Request {
            conv,
            to,
            from,
            method,
            timeout_ms,
            args,
            user,
        }) => {
            fields.extend([
                ("conv", Json::from(*conv)),
                ("to", text(to)),
                ("from", opt(from.as_ref())),
                ("method", text(method)),
                ("timeout_ms", Json::from(*timeout_ms)),
                ("args", bin(args)),
            ]);
            // A trailing element, in the vectors only where a frame has it.
            if let Some(user) = user {
                fields.push(("user", text(user)));
            }
        }
        Frame::Response(frame::Response { conv, result }) => {
            fields.extend([("conv", Json::from(*conv)), ("result", bin(result))]);
        }
        Frame::Failure(frame::Failure {
            conv,
            error,
            description,
            origin,
            details,
            withdrawn,
        }) => {
            fields.extend([
                ("conv", Json::from(*conv)),
                ("error", Json::from(*error)),
                ("description", text(description)),
                ("origin", text(origin)),
                ("details", text(details)),
            ]);
            if *withdrawn {
                fields.push(("withdrawn", Json::from(true)));
            }
        }
        Frame::Cancel(frame::Cancel { conv }) => fields.push(("conv", Json::from(*conv))),
        Frame::Subscribe(frame::Subscribe {
            sid,
            publisher,
            subscriber,
            pattern,
        }) => fields.extend([
            ("sid", Json::from(*sid)),
            ("publisher", text(publisher)),
            ("subscriber", text(subscriber)),
            ("pattern", text(pattern)),
        ]),
        Frame::Subscribed(frame::Subscribed { sid, refused }) => {
            fields.push(("sid", Json::from(*sid)));
            if *refused {
                fields.push(("refused", Json::from(true)));
            }
        }
        Frame::Unsubscribe(frame::Unsubscribe { sid }) => {
            fields.push(("sid", Json::from(*sid)));
        }
        Frame::Report(frame::Report {
            publisher,
            subject,
            seq,
            payload,
            paced,
        }) => {
            fields.extend([
                ("publisher", text(publisher)),
                ("subject", text(subject)),
                ("seq", Json::from(*seq)),
                ("payload", bin(payload)),
            ]);
            if *paced {
                fields.push(("paced", Json::from(true)));
            }
        }
        Frame::Targeted(frame::Targeted {
            sid,
            subject,
            seq,
            pattern,
            targeted,
            payload,
        }) => fields.extend([
            ("sid", Json::from(*sid)),
            ("subject", text(subject)),
            ("seq", Json::from(*seq)),
            ("pattern", opt(pattern.as_ref())),
            ("targeted", Json::from(*targeted)),
            ("payload", bin(payload)),
        ]),
        Frame::Missed(frame::Missed { publisher, count }) => fields.extend([
            ("publisher", text(publisher)),
            ("count", Json::from(*count)),
        ]),
    }
    let fields: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn hex(bytes: &[u8], sep: &str) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(sep)
}

fn render_vectors() -> String {
    let mut out = String::from(
        "# netsvc wire protocol test vectors (see docs/PROTOCOL.md).\n\
         #\n\
         # Each vector: `## name`, a description, `frame:` the frame as JSON in wire field order\n\
         # (payloads as {\"msgpack\": their hex bytes, \"value\": the value they encode}), and\n\
         # `hex:` lines holding the complete frame, length prefix included, 16 bytes per line.\n\
         # Checked by crates/netsvc-proto/tests/wire.rs; regenerate after a deliberate change with\n\
         # NETSVC_BLESS=1 cargo test -p netsvc-proto --test wire\n",
    );
    for (name, description, frame) in vectors() {
        let bytes = to_bytes(&frame);
        write!(
            out,
            "\n## {name}\n{description}\nframe: {}\n",
            frame_json(&frame)
        )
        .unwrap();
        for chunk in bytes.chunks(16) {
            writeln!(out, "hex: {}", hex(chunk, " ")).unwrap();
        }
    }
    out
}

/// The vectors in the committed file: name and frame bytes.
fn parse_vectors(file: &str) -> Vec<(String, Vec<u8>)> {
    let mut vectors: Vec<(String, Vec<u8>)> = Vec::new();
    for line in file.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            vectors.push((name.to_owned(), Vec::new()));
        } else if let Some(hex) = line.strip_prefix("hex: ") {
            let bytes = &mut vectors.last_mut().expect("hex before a name").1;
            for byte in hex.split_whitespace() {
                bytes.push(u8::from_str_radix(byte, 16).expect("hex byte"));
            }
        }
    }
    vectors
}

/// One test, not two, so blessing the file cannot race with reading it.
#[test]
fn vectors_are_current_and_decode_and_encode_byte_for_byte() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(VECTORS);
    let rendered = render_vectors();
    if std::env::var_os("NETSVC_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let file = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        file, rendered,
        "{VECTORS} is out of date; see the note at the top of tests/wire.rs"
    );

    // Independently of the rendering, the hex in the file must decode to the frames and the
    // frames must encode to it.
    let committed = parse_vectors(&file);
    let expected = vectors();
    assert_eq!(committed.len(), expected.len());
    for ((name, bytes), (expected_name, _, frame)) in committed.iter().zip(&expected) {
        assert_eq!(name, expected_name);
        let mut buf = BytesMut::from(&bytes[..]);
        let (decoded, raw) = Decoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(&decoded, frame, "{name}");
        assert_eq!(raw, &bytes[..], "{name}");
        assert!(buf.is_empty(), "{name}");
        assert_eq!(&to_bytes(frame)[..], &bytes[..], "{name}");
    }
    // Every kind is covered.
    let mut kinds: Vec<u8> = expected.iter().map(|(_, _, f)| f.kind()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), 18);
}

#[test]
fn echo_request_payload_is_plain_msgpack() {
    let (_, _, frame) = vectors()
        .into_iter()
        .find(|(name, _, _)| *name == "request-echo")
        .unwrap();
    let Frame::Request(frame::Request { args, .. }) = frame else {
        panic!("not a request")
    };
    assert_eq!(&args[..], &[0x91, 0xa2, 0x68, 0x69]);
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        3 => "[a-z.:/*?]{0,12}",
        1 => ".{0,40}",
    ]
    .prop_map(Text::from)
}

fn texts() -> impl Strategy<Value = Vec<Text>> {
    proptest::collection::vec(text(), 0..5)
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(any::<u8>(), 250..70_000),
    ]
    .prop_map(Bytes::from)
}

/// Integers spread over every MessagePack size class.
fn uint() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..=0x7fu64,
        0x80..=0xffu64,
        0x100..=0xffffu64,
        0x1_0000..=0xffff_ffffu64,
        any::<u64>(),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    let hello = (
        any::<u16>(),
        prop_oneof![Just(Role::Client), Just(Role::Server)],
        text(),
        text(),
        uint(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec((text(), text()), 0..20),
    )
        .prop_map(
            |(version, role, group, process, incarnation, heartbeat_ms, max_frame, options)| {
                Frame::Hello(Hello {
                    version,
                    role,
                    group,
                    process,
                    incarnation,
                    heartbeat_ms,
                    max_frame,
                    options,
                })
            },
        );
    prop_oneof![
        hello,
        (any::<u16>(), text()).prop_map(|(code, reason)| Frame::Close(frame::Close {
            code: CloseCode::from_code(code),
            reason
        })),
        Just(Frame::Heartbeat),
        Just(Frame::Synced),
        (text(), text(), text(), texts(), uint(), texts()).prop_map(
            |(address, name, audience, groups, version, path)| Frame::Service(frame::Service {
                address,
                name,
                audience,
                groups,
                version,
                path
            })
        ),
        (text(), any::<u8>())
            .prop_map(|(address, reason)| Frame::Withdraw(frame::Withdraw { address, reason })),
        (uint(), any::<bool>(), texts())
            .prop_map(|(seq, all, names)| Frame::Interest(frame::Interest { seq, all, names })),
        uint().prop_map(|seq| Frame::Interested(frame::Interested { seq })),
        (
            uint(),
            text(),
            proptest::option::of(text()),
            text(),
            uint(),
            bytes(),
            proptest::option::of(text()),
        )
            .prop_map(
                |(conv, to, from, method, timeout_ms, args, user)| Frame::Request(frame::Request {
                    conv,
                    to,
                    from,
                    method,
                    timeout_ms,
                    args,
                    user,
                })
            ),
        (uint(), bytes())
            .prop_map(|(conv, result)| Frame::Response(frame::Response { conv, result })),
        (uint(), any::<i32>(), text(), text(), text(), any::<bool>()).prop_map(
            |(conv, error, description, origin, details, withdrawn)| Frame::Failure(
                frame::Failure {
                    conv,
                    error,
                    description,
                    origin,
                    details,
                    withdrawn,
                }
            )
        ),
        uint().prop_map(|conv| Frame::Cancel(frame::Cancel { conv })),
        (uint(), text(), text(), text()).prop_map(|(sid, publisher, subscriber, pattern)| {
            Frame::Subscribe(frame::Subscribe {
                sid,
                publisher,
                subscriber,
                pattern,
            })
        }),
        (uint(), any::<bool>())
            .prop_map(|(sid, refused)| Frame::Subscribed(frame::Subscribed { sid, refused })),
        uint().prop_map(|sid| Frame::Unsubscribe(frame::Unsubscribe { sid })),
        (text(), text(), uint(), bytes()).prop_map(|(publisher, subject, seq, payload)| {
            Frame::Report(frame::Report {
                publisher,
                subject,
                seq,
                payload,
                paced: false,
            })
        }),
        (
            uint(),
            text(),
            uint(),
            proptest::option::of(text()),
            any::<bool>(),
            bytes()
        )
            .prop_map(|(sid, subject, seq, pattern, targeted, payload)| {
                Frame::Targeted(frame::Targeted {
                    sid,
                    subject,
                    seq,
                    pattern,
                    targeted,
                    payload,
                })
            }),
        (text(), uint())
            .prop_map(|(publisher, count)| Frame::Missed(frame::Missed { publisher, count })),
    ]
}

/// Decodes frames off `buf` until it needs more input or fails; must never panic.
fn drain(decoder: &Decoder, buf: &mut BytesMut) {
    while let Ok(Some(_)) = decoder.decode(buf) {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip(frame in frame()) {
        let bytes = to_bytes(&frame);
        let mut buf = bytes.clone();
        let (decoded, raw) = Decoder::default().decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(&raw[..], &bytes[..]);
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode_body(raw.slice(4..)).unwrap(), frame);
    }

    #[test]
    fn frames_arrive_in_pieces(frames in proptest::collection::vec(frame(), 1..5), step in 1usize..300) {
        let mut stream = BytesMut::new();
        for frame in &frames {
            encode(frame, &mut stream);
        }
        let decoder = Decoder::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in stream.chunks(step) {
            buf.extend_from_slice(chunk);
            while let Some((frame, _)) = decoder.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_body(Bytes::from(input.clone()));
        drain(&Decoder::new(256), &mut BytesMut::from(&input[..]));
    }

    #[test]
    fn arbitrary_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        kind in 0u8..0x40,
    ) {
        // Start from a plausible array header and kind so the field parsers get exercised.
        let mut input = vec![0x98, kind];
        input.extend_from_slice(&body);
        let _ = decode_body(Bytes::from(input));
    }

    #[test]
    fn mutated_frames_never_panic(
        frame in frame(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = to_bytes(&frame).to_vec();
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        let _ = decode_body(Bytes::copy_from_slice(&bytes[4..]));
        bytes.truncate(4 + cut % (bytes.len() - 3));
        drain(&Decoder::default(), &mut BytesMut::from(&bytes[..]));
    }
}
