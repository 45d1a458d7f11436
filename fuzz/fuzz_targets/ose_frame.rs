//! The OSE dialect's decoders on arbitrary bytes, as a hostile OSE peer would send them:
//! frames split from a stream with a small limit, each read as a message. Nothing may panic
//! or buffer beyond the limit, and every frame that decodes must encode to bytes that
//! decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsvc_ose::{FrameDecoder, Message};

const MAX_FRAME: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    // In two pieces, as a stream may arrive.
    let (first, rest) = data.split_at(data.len() / 2);
    for piece in [first, rest] {
        decoder.extend(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(envelope)) => {
                    let mut again = FrameDecoder::new(MAX_FRAME + 16);
                    again.extend(&envelope.to_bytes());
                    let back = again.next_frame().expect("an encoded frame decodes");
                    assert_eq!(back.as_ref(), Some(&envelope), "encoding is faithful");
                    let _ = Message::parse(&envelope);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(decoder.buffer_mut().len() <= MAX_FRAME + 8 + piece.len());
    }
});
