//! The handshake decision (`wire::handshake::step`) on arbitrary bytes, fed in arbitrary
//! chunks as a socket would deliver them: it must never panic, never consume anything while
//! it needs more, reach the same decision however the bytes are split (the same HELLO, or
//! the same close code and cause; a stranger's reason quotes what had arrived, which may
//! differ), and accept only a HELLO that passes every check, consuming exactly its frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use netsvc_proto::wire::handshake::{self, Local, Step};
use netsvc_proto::wire::{Frame, PROTOCOL_VERSION, encode};

/// What a step decided, without the words it said it with.
fn decision(step: &Step) -> String {
    match step {
        Step::Reject(r) => format!("reject {:?} {:?}", r.code, r.cause),
        other => format!("{other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let local = Local {
        group: "default",
        process: "hub:1",
        version: PROTOCOL_VERSION,
        // Sometimes a small configured limit, so both size checks are exercised.
        max_frame: if control & 0x80 != 0 { 64 } else { 20 << 20 },
    };
    let chunk = usize::from(control & 0x0f) + 1;

    // Everything at once.
    let mut whole = BytesMut::from(bytes);
    let at_once = handshake::step(&mut whole, &local);

    // Chunk by chunk.
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let outcome = loop {
        let before = buf.len();
        match handshake::step(&mut buf, &local) {
            Step::NeedMore => {
                assert_eq!(buf.len(), before, "nothing consumed while waiting");
                if fed == bytes.len() {
                    break Step::NeedMore;
                }
                let end = (fed + chunk).min(bytes.len());
                buf.extend_from_slice(&bytes[fed..end]);
                fed = end;
            }
            decided => break decided,
        }
    };
    assert_eq!(
        decision(&outcome),
        decision(&at_once),
        "the decision does not depend on how bytes arrive"
    );

    if let Step::Accept(hello) = &outcome {
        assert_eq!(hello.version, local.version);
        assert_eq!(hello.group.as_str(), local.group);
        assert_ne!(hello.process.as_str(), local.process);
        assert!(!hello.process.is_empty() && !hello.process.contains(['!', '@']));
        // Exactly the HELLO's frame was taken off the front.
        let mut encoded = BytesMut::new();
        encode(&Frame::Hello(hello.clone()), &mut encoded);
        let consumed = bytes.len() - whole.len();
        let size = u32::from_be_bytes(bytes[..4].try_into().expect("a prefix")) as usize;
        assert_eq!(consumed, 4 + size);
        assert!(size <= handshake::MAX_HELLO);
        assert_eq!(&whole[..], &bytes[consumed..]);
    }
    if let Step::Reject(rejection) = &outcome {
        assert!(!rejection.reason.is_empty());
    }
});
