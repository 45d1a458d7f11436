//! A hub's per-report work without the sockets, as a fixed workload for instruction-count
//! profiling (`valgrind --tool=callgrind`), which is steadier than wall-clock time on a
//! shared machine: decode a REPORT, look its subject up in a literal-only index, encode it
//! again for the subscriber.
//!
//! `cargo run --release -p netsvc-proto --example report_hot_path -- 100000`; to count only
//! the measured loop, not building its input:
//! `valgrind --tool=callgrind --toggle-collect='*hot_loop*' target/release/examples/report_hot_path`

use bytes::{Bytes, BytesMut};
use netsvc_proto::wire::{Decoder, Frame, Text, encode, frame};
use netsvc_proto::{Pattern, PatternIndex};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 100_000,
    };
    let publisher = Text::from("1@host:1234!bench-pub");
    let subject = Text::from("bench");
    let mut input = BytesMut::new();
    for seq in 0..count {
        let mut payload = vec![0xc4, 16];
        payload.extend_from_slice(&seq.to_le_bytes());
        payload.extend_from_slice(&[0x5a; 8]);
        let frame = Frame::Report(frame::Report {
            publisher: publisher.clone(),
            subject: subject.clone(),
            seq: (1 << 40) + seq,
            payload: Bytes::from(payload),
            paced: false,
        });
        encode(&frame, &mut input);
    }
    let mut index = PatternIndex::new();
    index.insert(&Pattern::new("bench")?, 1u64);

    let mut out = BytesMut::with_capacity(input.len());
    let delivered = hot_loop(&mut input, &index, &mut out)?;
    assert_eq!(delivered, count);
    println!("{delivered} reports, {} bytes out", out.len());
    Ok(())
}

/// Kept out of line so a profiler can count it alone.
#[inline(never)]
fn hot_loop(
    input: &mut BytesMut,
    index: &PatternIndex<u64>,
    out: &mut BytesMut,
) -> Result<u64, Box<dyn std::error::Error>> {
    let decoder = Decoder::default();
    let mut delivered = 0u64;
    while let Some((frame, _raw)) = decoder.decode(input)? {
        if let Frame::Report(frame::Report { subject, .. }) = &frame {
            index.for_each_match(subject.as_str(), |_, _| delivered += 1);
        }
        encode(&frame, out);
    }
    Ok(delivered)
}
