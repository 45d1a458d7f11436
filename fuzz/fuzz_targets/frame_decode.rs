//! The frame decoder on arbitrary bytes: it must never panic, never consume bytes when it
//! asks for more, and every frame it accepts must survive re-encoding unchanged (the
//! encoder's output is canonical: decoding and encoding it again gives the same bytes).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use netsvc_proto::wire::{Decoder, Frame, decode_body, encode};

/// Encodes `frame`, checks the encoding decodes to the same frame and is a fixed point.
fn check_round_trip(frame: &Frame) {
    let mut encoded = BytesMut::new();
    let size = encode(frame, &mut encoded);
    assert_eq!(size, encoded.len());
    let canonical = encoded.clone().freeze();
    let (again, raw) = Decoder::new(usize::MAX)
        .decode(&mut encoded)
        .expect("an encoded frame decodes")
        .expect("an encoded frame is whole");
    assert!(encoded.is_empty(), "one frame, nothing after it");
    assert_eq!(&again, frame);
    assert_eq!(raw, canonical);
    let mut twice = BytesMut::new();
    encode(&again, &mut twice);
    assert_eq!(twice.freeze(), canonical, "encoding is canonical");
}

fuzz_target!(|data: &[u8]| {
    // The body alone (what a hub sees after the prefix).
    if let Ok(frame) = decode_body(Bytes::copy_from_slice(data)) {
        check_round_trip(&frame);
    }
    // The stream: a small limit from the first byte, so both sides of the size check run.
    let Some((&limit, stream)) = data.split_first() else {
        return;
    };
    let decoder = Decoder::new(usize::from(limit) * 16);
    let mut buf = BytesMut::from(stream);
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some((frame, raw))) => {
                assert_eq!(before - buf.len(), raw.len(), "exactly the frame is consumed");
                let size = u32::from_be_bytes(raw[..4].try_into().expect("4 bytes"));
                assert_eq!(raw.len(), 4 + size as usize);
                assert!(size as usize <= decoder.max_frame());
                check_round_trip(&frame);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "nothing consumed while waiting");
                break;
            }
            Err(_) => break,
        }
    }
});
