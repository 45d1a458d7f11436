use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;

fn t(s: &str) -> Text {
    Text::from(s)
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role: Role::Client,
        group: t("default"),
        process: t("host1:1234:1"),
        incarnation: 1_700_000_000_123,
        heartbeat_ms: 1000,
        max_frame: 20 * 1024 * 1024,
        options: vec![(t("compress"), t("none")), (t(""), t(""))],
    }
}

/// One frame per kind, plus edge cases: empty strings, `None`s, extreme integers and
/// payloads of every bin size class.
fn samples() -> Vec<Frame> {
    vec![
        Frame::Hello(hello()),
        Frame::Hello(Hello {
            role: Role::Server,
            group: t(""),
            process: t("ünïcödé"),
            incarnation: u64::MAX,
            heartbeat_ms: u32::MAX,
            max_frame: 0,
            options: vec![],
            version: u16::MAX,
        }),
        Frame::Close(frame::Close {
            code: CloseCode::DuplicateLink,
            reason: t("duplicate link"),
        }),
        Frame::Close(frame::Close {
            code: CloseCode::Other(u16::MAX),
            reason: t(""),
        }),
        Frame::Heartbeat,
        Frame::Synced,
        Frame::Service(frame::Service {
            address: t("1/2/3"),
            name: t("echo"),
            audience: t("*"),
            groups: vec![t("g1"), t("g2")],
            version: 7,
            path: vec![t("a"), t("b")],
        }),
        Frame::Service(frame::Service {
            address: t(""),
            name: t(""),
            audience: t(""),
            groups: vec![],
            version: u64::MAX,
            path: (0..20).map(|i| Text::from(format!("p{i}"))).collect(),
        }),
        Frame::Withdraw(frame::Withdraw {
            address: t("x"),
            reason: 255,
        }),
        Frame::Interest(frame::Interest {
            seq: 0,
            all: false,
            names: vec![t("echo"), t(""), t("ünïcödé")],
        }),
        Frame::Interest(frame::Interest {
            seq: u64::MAX,
            all: true,
            names: vec![],
        }),
        Frame::Interested(frame::Interested { seq: 1 << 40 }),
        Frame::Request(frame::Request {
            conv: 1,
            to: t("echo"),
            from: None,
            method: t("echo"),
            timeout_ms: 0,
            args: Bytes::from_static(&[0x91, 0xa2, b'h', b'i']),
            user: None,
        }),
        Frame::Request(frame::Request {
            conv: u64::MAX,
            to: t(&"t".repeat(300)),
            from: Some(t("caller")),
            method: t(&"m".repeat(70_000)),
            timeout_ms: u64::MAX,
            args: Bytes::new(),
            user: Some(t("alice")),
        }),
        Frame::Response(frame::Response {
            conv: 0x1_0000,
            result: Bytes::from(vec![7; 256]),
        }),
        Frame::Response(frame::Response {
            conv: 0x1_0000_0000,
            result: Bytes::from(vec![8; 70_000]),
        }),
        Frame::Failure(frame::Failure {
            conv: 128,
            error: -1,
            description: t("boom"),
            origin: t("netsvc"),
            details: t(""),
            withdrawn: false,
        }),
        Frame::Failure(frame::Failure {
            conv: 0,
            error: i32::MIN,
            description: t(""),
            origin: t(""),
            details: t("traceback"),
            withdrawn: false,
        }),
        Frame::Failure(frame::Failure {
            conv: 0,
            error: i32::MAX,
            description: t(""),
            origin: t(""),
            details: t(""),
            withdrawn: true,
        }),
        Frame::Cancel(frame::Cancel { conv: 255 }),
        Frame::Subscribe(frame::Subscribe {
            sid: 3,
            publisher: t("pub"),
            subscriber: t("sub"),
            pattern: t("a.*"),
        }),
        Frame::Subscribed(frame::Subscribed {
            sid: 65_535,
            refused: false,
        }),
        Frame::Subscribed(frame::Subscribed {
            sid: 7,
            refused: true,
        }),
        Frame::Unsubscribe(frame::Unsubscribe { sid: 65_536 }),
        Frame::Report(frame::Report {
            publisher: t("pub"),
            subject: t("a.b"),
            seq: 42,
            payload: Bytes::from_static(&[0xc0]),
            paced: false,
        }),
        Frame::Missed(frame::Missed {
            publisher: t("p"),
            count: u64::MAX,
        }),
        Frame::Targeted(frame::Targeted {
            sid: 3,
            subject: t("a.b"),
            seq: 41,
            pattern: Some(t("a.*")),
            targeted: false,
            payload: Bytes::from_static(&[0x01]),
        }),
        Frame::Targeted(frame::Targeted {
            sid: 3,
            subject: t(""),
            seq: 0,
            pattern: None,
            targeted: true,
            payload: Bytes::new(),
        }),
    ]
}

fn encoded(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode(frame, &mut out);
    out
}

/// A frame with the given body, length prefix added.
fn framed(body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32(u32::try_from(body.len()).unwrap());
    out.put_slice(body);
    out
}

fn decode_one(buf: &mut BytesMut) -> Result<Option<(Frame, Bytes)>, WireError> {
    Decoder::new(DEFAULT_MAX_FRAME).decode(buf)
}

fn malformed(body: &[u8]) -> String {
    match decode_body(Bytes::copy_from_slice(body)) {
        Err(WireError::Malformed(msg)) => msg,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn every_sample_round_trips_and_returns_its_raw_bytes() {
    for frame in samples() {
        let bytes = encoded(&frame);
        let mut buf = bytes.clone();
        let (decoded, raw) = decode_one(&mut buf).unwrap().unwrap();
        assert_eq!(decoded, frame);
        assert_eq!(raw, bytes.as_ref());
        assert!(buf.is_empty());
        assert_eq!(decode_body(raw.slice(4..)).unwrap(), frame);
    }
}

#[test]
fn encode_appends_and_reports_its_size() {
    let mut out = BytesMut::from(&b"xyz"[..]);
    let n = encode(&Frame::Heartbeat, &mut out);
    assert_eq!(n, 6);
    assert_eq!(&out[..], b"xyz\x00\x00\x00\x02\x91\x03");
    for frame in samples() {
        let before = out.len();
        let n = encode(&frame, &mut out);
        assert_eq!(out.len() - before, n);
        let body = u32::from_be_bytes(out[before..before + 4].try_into().unwrap());
        assert_eq!(body as usize + 4, n);
    }
}

#[test]
fn decoded_fields_share_the_frame_buffer() {
    let frame = Frame::Report(frame::Report {
        publisher: t("pub"),
        subject: t("a.b"),
        seq: 1,
        payload: Bytes::from_static(b"\x92\x01\x02"),
        paced: false,
    });
    let mut buf = encoded(&frame);
    let (decoded, raw) = decode_one(&mut buf).unwrap().unwrap();
    let range = raw.as_ptr() as usize..raw.as_ptr() as usize + raw.len();
    let Frame::Report(frame::Report {
        publisher,
        subject,
        payload,
        paced: false,
        ..
    }) = decoded
    else {
        panic!("not a report");
    };
    for ptr in [publisher.as_ptr(), subject.as_ptr(), payload.as_ptr()] {
        assert!(range.contains(&(ptr as usize)));
    }
}

#[test]
fn every_prefix_needs_more_and_consumes_nothing() {
    for frame in samples().into_iter().filter(|f| encoded(f).len() < 2000) {
        let bytes = encoded(&frame);
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(decode_one(&mut buf), Ok(None), "{frame:?} cut at {cut}");
            assert_eq!(&buf[..], &bytes[..cut]);
        }
    }
}

#[test]
fn back_to_back_frames_come_off_one_at_a_time() {
    let first = Frame::Cancel(frame::Cancel { conv: 9 });
    let second = Frame::Hello(hello());
    let mut buf = encoded(&first);
    buf.extend_from_slice(&encoded(&second));
    buf.extend_from_slice(&encoded(&first)[..3]);
    let decoder = Decoder::default();
    assert_eq!(decoder.decode(&mut buf).unwrap().unwrap().0, first);
    assert_eq!(decoder.decode(&mut buf).unwrap().unwrap().0, second);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 3);
}

#[test]
fn oversized_prefix_is_rejected_before_the_body_arrives() {
    let decoder = Decoder::new(100);
    assert_eq!(decoder.max_frame(), 100);
    let mut buf = BytesMut::from(&101u32.to_be_bytes()[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(WireError::FrameTooLarge {
            size: 101,
            limit: 100
        })
    );
    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        Decoder::default().decode(&mut buf),
        Err(WireError::FrameTooLarge { .. })
    ));
    // Exactly at the limit is fine.
    let mut buf = BytesMut::from(&100u32.to_be_bytes()[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn zero_length_frame_is_empty() {
    let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
    assert_eq!(decode_one(&mut buf), Err(WireError::Empty));
    assert_eq!(decode_body(Bytes::new()), Err(WireError::Empty));
}

#[test]
fn unknown_kinds_are_rejected() {
    let mut buf = framed(&[0x91, 0x7f]);
    assert_eq!(decode_one(&mut buf), Err(WireError::UnknownKind(0x7f)));
    assert_eq!(
        decode_body(Bytes::from_static(&[0x91, 0x00])),
        Err(WireError::UnknownKind(0))
    );
    // Checked before the fields, so a newer kind with any fields is UnknownKind.
    assert_eq!(
        decode_body(Bytes::from_static(&[0x93, 0x24, 0xc1, 0xc1])),
        Err(WireError::UnknownKind(0x24))
    );
    assert!(malformed(&[0x91, 0xcd, 0x01, 0x00]).contains("frame kind 256"));
    assert!(malformed(&[0x91, 0xff]).contains("frame kind -1"));
    assert!(malformed(&[0x91, 0xa1, b'x']).contains("frame kind"));
}

#[test]
fn body_must_be_a_non_empty_array() {
    assert!(malformed(&[0x03]).contains("frame body: expected an array"));
    assert!(malformed(&[0x90]).contains("empty array"));
    assert!(malformed(&[0xdc, 0x00]).contains("ends in the middle"));
}

#[test]
fn wrong_field_type_names_frame_and_field() {
    // REQUEST [32, 1, 5, ...]: `to` is an integer.
    let msg = malformed(&[0x97, 0x20, 0x01, 0x05, 0xc0, 0xa0, 0x00, 0xc4, 0x00]);
    assert_eq!(
        msg,
        "REQUEST field 2 (to): expected a string, found an integer (marker 0x05)"
    );
    assert_eq!(
        WireError::Malformed(msg).to_string(),
        "malformed frame: REQUEST field 2 (to): expected a string, found an integer (marker \
         0x05)"
    );
    // REPORT payload as str instead of bin.
    let msg = malformed(&[0x95, 0x33, 0xa1, b'p', 0xa1, b's', 0x01, 0xa0]);
    assert!(
        msg.starts_with("REPORT field 4 (payload): expected a byte string"),
        "{msg}"
    );
    // TARGETED targeted as integer.
    let msg = malformed(&[0x97, 0x34, 0x01, 0xa0, 0x01, 0xc0, 0x01, 0xc4, 0x00]);
    assert!(
        msg.starts_with("TARGETED field 5 (targeted): expected a boolean"),
        "{msg}"
    );
    // HELLO role misspelt.
    let mut body = encoded(&Frame::Hello(hello()))[4..].to_vec();
    let at = body.windows(6).position(|w| w == b"client").unwrap();
    body[at] = b'C';
    let msg = malformed(&body);
    assert!(msg.starts_with("HELLO field 3 (role)"), "{msg}");
}

#[test]
fn integers_out_of_range_are_malformed() {
    let msg = malformed(&[0x93, 0x11, 0xa0, 0xcd, 0x01, 0x00]);
    assert_eq!(
        msg,
        "WITHDRAW field 2 (reason): expected an integer in 0 to 255, found 256"
    );
    let msg = malformed(&[0x92, 0x23, 0xff]);
    assert!(msg.starts_with("CANCEL field 1 (conv)"), "{msg}");
    // FAILURE error beyond i32.
    let msg = malformed(&[
        0x96, 0x22, 0x00, 0xce, 0x80, 0x00, 0x00, 0x00, 0xa0, 0xa0, 0xa0,
    ]);
    assert!(msg.starts_with("FAILURE field 2 (error)"), "{msg}");
    assert!(malformed(&[0x93, 0x02, 0xce, 0x00, 0x01, 0x00, 0x00, 0xa0]).contains("CLOSE field 1"));
}

#[test]
fn any_integer_form_is_accepted() {
    // CANCEL conv 5 as uint64, int8 and int64; FAILURE error 1 as uint32 and -1 as int64.
    for body in [
        &[0x92, 0x23, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5][..],
        &[0x92, 0x23, 0xd0, 5],
        &[0x92, 0x23, 0xd3, 0, 0, 0, 0, 0, 0, 0, 5],
        &[0x92, 0xcc, 0x23, 0x05],
    ] {
        assert_eq!(
            decode_body(Bytes::copy_from_slice(body)),
            Ok(Frame::Cancel(frame::Cancel { conv: 5 }))
        );
    }
    let frame = decode_body(Bytes::from_static(&[
        0x96, 0x22, 0x00, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xa0, 0xa0, 0xa0,
    ]))
    .unwrap();
    assert!(matches!(
        frame,
        Frame::Failure(frame::Failure { error: -1, .. })
    ));
    // Non-minimal headers for arrays, strings and bins too.
    let frame = decode_body(Bytes::from_static(&[
        0xdd, 0, 0, 0, 5, 0x33, 0xd9, 1, b'p', 0xdb, 0, 0, 0, 1, b's', 0x01, 0xc6, 0, 0, 0, 1, 0xc0,
    ]))
    .unwrap();
    assert_eq!(
        frame,
        Frame::Report(frame::Report {
            publisher: t("p"),
            subject: t("s"),
            seq: 1,
            payload: Bytes::from_static(&[0xc0]),
            paced: false,
        })
    );
}

#[test]
fn invalid_utf8_is_reported_as_such() {
    // WITHDRAW address "\xff".
    assert_eq!(
        decode_body(Bytes::from_static(&[0x93, 0x11, 0xa1, 0xff, 0x00])),
        Err(WireError::InvalidUtf8)
    );
    // In a list of strings and a HELLO option.
    let mut body = encoded(&Frame::Service(frame::Service {
        address: t("a"),
        name: t("n"),
        audience: t("*"),
        groups: vec![t("é")],
        version: 1,
        path: vec![],
    }))[4..]
        .to_vec();
    let at = body.iter().position(|&b| b == 0xc3).unwrap();
    body[at] = 0xff;
    assert_eq!(decode_body(Bytes::from(body)), Err(WireError::InvalidUtf8));
    let mut body = encoded(&Frame::Hello(hello()))[4..].to_vec();
    let at = body.windows(4).position(|w| w == b"none").unwrap();
    body[at] = 0x80;
    assert_eq!(decode_body(Bytes::from(body)), Err(WireError::InvalidUtf8));
    assert_eq!(
        Text::try_from_bytes(Bytes::from_static(b"\xc3")),
        Err(WireError::InvalidUtf8)
    );
}

#[test]
fn hello_needs_the_magic() {
    let good = encoded(&Frame::Hello(hello()))[4..].to_vec();
    let mut bad = good.clone();
    let at = bad.windows(6).position(|w| w == b"netsvc").unwrap();
    bad[at] = b'N';
    assert_eq!(decode_body(Bytes::from(bad)), Err(WireError::BadMagic));
    // Missing or of the wrong type.
    for body in [
        &[0x91, 0x01][..],
        &[0x92, 0x01, 0x01],
        &[0x92, 0x01, 0xa3, b'o', b's', b'e'],
    ] {
        assert_eq!(
            decode_body(Bytes::copy_from_slice(body)),
            Err(WireError::BadMagic)
        );
    }
}

#[test]
fn missing_fields_are_malformed() {
    let msg = malformed(&[0x92, 0x21, 0x01]);
    assert_eq!(
        msg,
        "RESPONSE field 2 (result): missing, the body array has only 2 elements"
    );
    let msg = malformed(&[0x91, 0x23]);
    assert!(msg.starts_with("CANCEL field 1 (conv): missing"), "{msg}");
}

#[test]
fn extra_trailing_elements_are_skipped() {
    let frame = Frame::Response(frame::Response {
        conv: 1,
        result: Bytes::from_static(&[0xc0]),
    });
    // [33, 1, bin, <extras>] with extras of every type class.
    let extras: &[&[u8]] = &[
        &[0x05],
        &[0xe0],
        &[0xc0],
        &[0xc3],
        &[0xa2, b'h', b'i'],
        &[0xd9, 1, b'x'],
        &[0xc4, 2, 1, 2],
        &[0xc5, 0, 1, 9],
        &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0xca, 0, 0, 0, 0],
        &[0xd4, 1, 0],
        &[0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0xc7, 2, 5, 0, 0],
        &[0x92, 0x91, 0x01, 0x81, 0xa1, b'k', 0x90],
        &[0xdc, 0, 2, 0x01, 0x02],
        &[0xde, 0, 1, 0x01, 0x02],
        &[0xcf, 0, 0, 0, 0, 0, 0, 0, 1],
    ];
    for extra in extras {
        let mut body = vec![0x94, 0x21, 0x01, 0xc4, 0x01, 0xc0];
        body.extend_from_slice(extra);
        let mut buf = framed(&body);
        assert_eq!(
            decode_one(&mut buf).unwrap().unwrap().0,
            frame,
            "extra {extra:02x?}"
        );
    }
    // Several extras at once, and HEARTBEAT with extras.
    let body = [0x96, 0x21, 0x01, 0xc4, 0x01, 0xc0, 0x01, 0x02, 0x90];
    assert_eq!(decode_body(Bytes::copy_from_slice(&body)), Ok(frame));
    assert_eq!(
        decode_body(Bytes::from_static(&[0x92, 0x03, 0x80])),
        Ok(Frame::Heartbeat)
    );
}

#[test]
fn bad_extra_elements_are_malformed() {
    // Truncated, invalid marker, and a lying count.
    assert!(malformed(&[0x92, 0x03, 0xa5, b'x']).contains("HEARTBEAT field 1 (unknown)"));
    assert!(malformed(&[0x92, 0x03, 0xc1]).contains("0xc1"));
    assert!(malformed(&[0x93, 0x03, 0x01]).contains("HEARTBEAT field 2 (unknown)"));
    assert!(malformed(&[0x92, 0x03, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]).contains("ends"));
    assert!(malformed(&[0x92, 0x03, 0xdf, 0xff, 0xff, 0xff, 0xff]).contains("ends"));
    // Nesting: 32 levels are skipped, 33 are not.
    let nested = |levels: usize| {
        let mut body = vec![0x92, 0x03];
        body.extend(std::iter::repeat_n(0x91, levels));
        body.push(0x00);
        body
    };
    assert_eq!(decode_body(Bytes::from(nested(32))), Ok(Frame::Heartbeat));
    assert!(malformed(&nested(33)).contains("nested too deeply"));
    // Deep enough to overflow the stack were the depth not bounded.
    assert!(malformed(&nested(100_000)).contains("nested too deeply"));
}

#[test]
fn bytes_after_the_array_are_malformed() {
    assert_eq!(
        malformed(&[0x91, 0x03, 0x00]),
        "HEARTBEAT: 1 bytes after the body array"
    );
    let mut body = encoded(&Frame::Cancel(frame::Cancel { conv: 1 }))[4..].to_vec();
    body.extend_from_slice(&[0xc0, 0xc0]);
    assert!(malformed(&body).contains("2 bytes after"));
}

#[test]
fn lying_lengths_do_not_allocate() {
    // SERVICE whose groups claim 2^32 - 1 strings, and HELLO options claiming as many pairs;
    // both must fail on the missing bytes rather than reserve for the claim.
    let body = [
        0x97, 0x10, 0xa0, 0xa0, 0xa0, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xa0,
    ];
    assert!(malformed(&body).contains("SERVICE field 4 (groups)"));
    let mut body = encoded(&Frame::Hello(Hello {
        options: vec![],
        ..hello()
    }))[4..]
        .to_vec();
    assert_eq!(body.pop(), Some(0x80));
    body.extend_from_slice(&[0xdf, 0xff, 0xff, 0xff, 0xff]);
    assert!(malformed(&body).contains("HELLO field 9 (options)"));
    // A string claiming more than the frame holds.
    assert!(malformed(&[0x93, 0x11, 0xdb, 0xff, 0xff, 0xff, 0xff]).contains("ends"));
}

#[test]
fn withdraw_codes_read_unknown_values_as_the_owners() {
    for code in 0..=u8::MAX {
        let typed = WithdrawCode::from_code(code);
        if code <= 3 {
            assert_eq!(typed.code(), code);
        } else {
            assert_eq!(typed, WithdrawCode::Owner, "{code}");
        }
    }
}

#[test]
fn close_codes_map_both_ways() {
    for code in 0..=20u16 {
        assert_eq!(CloseCode::from_code(code).code(), code);
    }
    assert_eq!(CloseCode::from_code(6), CloseCode::DuplicateLink);
    assert_eq!(CloseCode::from_code(0), CloseCode::Other(0));
    assert_eq!(CloseCode::from_code(12), CloseCode::TooManyConnections);
    assert_eq!(CloseCode::from_code(13), CloseCode::TlsRequired);
    assert_eq!(CloseCode::from_code(14), CloseCode::Other(14));
    assert_eq!(CloseCode::DuplicateLink.to_string(), "duplicate link");
    assert_eq!(CloseCode::NotAuthorised.to_string(), "not authorised");
    assert_eq!(CloseCode::Other(99).to_string(), "close code 99");
}

#[test]
fn frame_kinds_and_names() {
    let names: Vec<_> = samples().iter().map(|f| (f.kind(), f.name())).collect();
    for (kind, name) in [
        (0x01, "HELLO"),
        (0x02, "CLOSE"),
        (0x03, "HEARTBEAT"),
        (0x04, "SYNCED"),
        (0x10, "SERVICE"),
        (0x11, "WITHDRAW"),
        (0x20, "REQUEST"),
        (0x21, "RESPONSE"),
        (0x22, "FAILURE"),
        (0x23, "CANCEL"),
        (0x30, "SUBSCRIBE"),
        (0x31, "SUBSCRIBED"),
        (0x32, "UNSUBSCRIBE"),
        (0x33, "REPORT"),
        (0x34, "TARGETED"),
        (0x35, "MISSED"),
    ] {
        assert!(names.contains(&(kind, name)), "{name}");
    }
}

#[test]
fn error_messages() {
    assert_eq!(
        WireError::FrameTooLarge {
            size: 30,
            limit: 20
        }
        .to_string(),
        "frame of 30 bytes is over the limit of 20"
    );
    assert_eq!(
        WireError::UnknownKind(0x7f).to_string(),
        "unknown frame kind 0x7f"
    );
}

#[test]
fn text_behaves_like_a_str() {
    let text = Text::from("héllo");
    assert_eq!(text.as_str(), "héllo");
    assert_eq!(text, "héllo");
    assert_eq!(text, *"héllo");
    assert_eq!("héllo", text);
    assert_eq!(text.len(), 6);
    assert!(!text.is_empty());
    assert!(Text::default().is_empty());
    assert_eq!(format!("{text:?}"), "\"héllo\"");
    assert_eq!(format!("{text}"), "héllo");
    assert!(text.starts_with("hé"));
    assert_eq!(Text::from_static("a"), Text::from(String::from("a")));
    assert_eq!(Text::from(std::sync::Arc::<str>::from("a")), "a");
    assert_eq!(Text::from(&std::sync::Arc::<str>::from("a")), "a");
    assert_eq!(Text::from(&String::from("a")), "a");
    assert_eq!(
        Text::try_from_bytes(Bytes::from_static(b"ok"))
            .unwrap()
            .into_bytes(),
        Bytes::from_static(b"ok")
    );
    // Ordered like the strings (UTF-8 byte order is code point order).
    let (a, b, z, e) = (t("a"), t("b"), t("z"), t("é"));
    assert!(a < b && b < z && z < e);
    // Hash agrees with str, so maps keyed by Text can be queried with &str.
    let mut map = HashMap::new();
    map.insert(Text::from("key"), 1);
    assert_eq!(map.get("key"), Some(&1));
}

#[test]
fn encode_report_writes_the_bytes_of_the_equal_frame() {
    let long = "s".repeat(300);
    let big = vec![7u8; 70_000];
    for (publisher, subject, seq, payload, paced) in [
        ("1@h:1!pub", "bench", 1u64, &b"\x01\x02"[..], false),
        ("1@h:1!pub", "bench", 2u64, &b"\x01\x02"[..], true),
        ("", "", 0, &b""[..], false),
        ("1@h:1!p", long.as_str(), u64::MAX, &big[..], true),
    ] {
        let mut expected = BytesMut::new();
        let n = encode(
            &Frame::Report(frame::Report {
                publisher: Text::from(publisher),
                subject: Text::from(subject),
                seq,
                payload: Bytes::copy_from_slice(payload),
                paced,
            }),
            &mut expected,
        );
        let mut out = BytesMut::from(&b"prefix"[..]);
        let m = encode_report(publisher, subject, seq, payload, paced, &mut out);
        assert_eq!(n, m);
        assert_eq!(&out[6..], &expected[..]);
        let mut both = BytesMut::from(&out[6..]);
        let (decoded, _) = Decoder::default().decode(&mut both).unwrap().unwrap();
        assert!(matches!(decoded, Frame::Report(frame::Report { paced: p, .. }) if p == paced));
    }
}

#[test]
fn reports_in_other_shapes_than_ours_still_decode() {
    // A newer peer's extra trailing field, and a seq written as a signed 64-bit integer:
    // neither is the straight-pass shape, both are valid REPORT frames.
    let mut body = BytesMut::new();
    body.put_slice(&[0x97, 0x33, 0xa1, b'p', 0xa1, b's', 0xd3]);
    body.put_i64(7);
    body.put_slice(&[0xc4, 0x01, 0x2a, 0xc2, 0xc0]);
    let frame = decode_body(body.freeze()).unwrap();
    assert_eq!(
        frame,
        Frame::Report(frame::Report {
            publisher: t("p"),
            subject: t("s"),
            seq: 7,
            payload: Bytes::from_static(&[0x2a]),
            paced: false,
        })
    );
    // And a broken one still gets the general path's precise error.
    let err = decode_body(Bytes::from_static(&[0x95, 0x33, 0xa1, b'p', 0x01])).unwrap_err();
    assert!(err.to_string().contains("subject"), "{err}");
}
