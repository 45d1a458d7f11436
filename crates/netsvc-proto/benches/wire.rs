//! Cost of the codec on the report hot path: a hub decodes every REPORT a publisher sends
//! and encodes one per subscriber, so these two loops bound its report throughput.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netsvc_proto::wire::{Decoder, Frame, Text, encode, frame};

/// Frames per iteration: enough that per-iteration overhead (buffer clone) is amortised.
const BATCH: u64 = 1_000;

/// The frames the benchmark tool sends: one literal subject, a 16-byte payload.
fn reports() -> Vec<Frame> {
    let publisher = Text::from("1@host:1234!bench-pub");
    let subject = Text::from("bench");
    (0..BATCH)
        .map(|seq| {
            let mut payload = vec![0xc4, 16];
            payload.extend_from_slice(&seq.to_le_bytes());
            payload.extend_from_slice(&[0x5a; 8]);
            Frame::Report(frame::Report {
                publisher: publisher.clone(),
                subject: subject.clone(),
                // Counting up from a large value exercises the 8-byte integer form.
                seq: (1 << 40) + seq,
                payload: Bytes::from(payload),
                paced: false,
            })
        })
        .collect()
}

fn bench_wire(c: &mut Criterion) {
    let frames = reports();
    let mut encoded = BytesMut::new();
    for frame in &frames {
        encode(frame, &mut encoded);
    }
    let encoded = encoded.freeze();
    let decoder = Decoder::default();

    // Check once that the loop below decodes what was encoded, so a broken decoder cannot
    // report a flattering time.
    let mut buf = BytesMut::from(&encoded[..]);
    for frame in &frames {
        let (decoded, _) = decoder
            .decode(&mut buf)
            .expect("valid frame")
            .expect("whole frame");
        assert_eq!(&decoded, frame);
    }
    assert!(buf.is_empty());

    let mut group = c.benchmark_group("report_frames");
    group
        .throughput(Throughput::Elements(BATCH))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("decode", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&encoded[..]),
            |buf| {
                let mut seqs = 0u64;
                while let Some((frame, _raw)) = decoder.decode(buf).expect("valid frame") {
                    if let Frame::Report(frame::Report { subject, seq, .. }) = &frame {
                        // Touch the subject as a router would, so `as_str` is part of the cost.
                        seqs = seqs.wrapping_add(*seq + subject.as_str().len() as u64);
                    }
                }
                seqs
            },
            criterion::BatchSize::LargeInput,
        );
    });
    let mut out = BytesMut::with_capacity(encoded.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            for frame in black_box(&frames) {
                encode(frame, &mut out);
            }
            out.len()
        });
    });
    group.finish();
}

criterion_group!(benches, bench_wire);
criterion_main!(benches);
