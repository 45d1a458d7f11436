//! Cost of finding the subscriptions that match a report subject: the trie-based
//! `PatternIndex` against testing every pattern in turn, over 10,000 patterns shaped like a
//! plant-monitoring deployment.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use netsvc_proto::{Pattern, PatternIndex};

/// 7,000 exact subjects, 2,000 per-sensor wildcards, 900 leading-star alarms and 100 `?`
/// patterns: mostly literal, as real subscription tables are, with enough leading `*` to keep
/// a state alive across the whole subject.
fn patterns() -> Vec<Pattern> {
    let texts = (0..7_000)
        .map(|n| format!("sensor.{n}.temp"))
        .chain((0..2_000).map(|n| format!("sensor.{n}.*")))
        .chain((0..900).map(|n| format!("*.alarm.{n}")))
        .chain((0..100).map(|n| format!("room?.light.{n}.*")));
    texts
        .map(|t| Pattern::new(&t).expect("bench patterns are valid"))
        .collect()
}

/// Subjects with the number of patterns each one matches, checked before measuring so a
/// broken index cannot produce flattering numbers.
const SUBJECTS: [(&str, &str, usize); 4] = [
    ("literal-hit", "sensor.1234.temp", 2),
    ("star-hit", "sensor.12.alarm.7", 2),
    ("question-hit", "room4.light.42.on", 1),
    ("miss", "hvac.zone3.fan.speed", 0),
];

fn bench_matching(c: &mut Criterion) {
    let patterns = patterns();
    let mut index = PatternIndex::new();
    for (key, pattern) in patterns.iter().enumerate() {
        index.insert(pattern, key);
    }
    assert_eq!(index.len(), 10_000);

    let mut group = c.benchmark_group("match_10k_patterns");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, subject, expected) in SUBJECTS {
        assert_eq!(index.matches(subject).len(), expected, "{subject}");
        let scanned = patterns.iter().filter(|p| p.matches(subject)).count();
        assert_eq!(scanned, expected, "{subject}");

        group.bench_with_input(BenchmarkId::new("index", name), subject, |b, subject| {
            b.iter(|| {
                let mut hits = 0usize;
                index.for_each_match(black_box(subject), |_, key| hits += *key);
                hits
            });
        });
        group.bench_with_input(BenchmarkId::new("scan", name), subject, |b, subject| {
            b.iter(|| {
                let subject = black_box(subject);
                let mut hits = 0usize;
                for (key, pattern) in patterns.iter().enumerate() {
                    if pattern.matches(subject) {
                        hits += key;
                    }
                }
                hits
            });
        });
    }
    group.finish();
}

/// The hub's common case: every subscription is a literal subject (`bench`, `mem.<i>.<j>`),
/// so no wildcard state exists and a report should cost one exact lookup.
fn bench_literal_only(c: &mut Criterion) {
    let mut index = PatternIndex::new();
    for i in 0..1_000u64 {
        for j in 0..10 {
            let pattern = Pattern::new(&format!("mem.{i}.{j}")).expect("valid pattern");
            index.insert(&pattern, i * 10 + j);
        }
    }
    let single = {
        let mut single = PatternIndex::new();
        single.insert(&Pattern::new("bench").expect("valid pattern"), 1u64);
        single
    };
    let mut group = c.benchmark_group("match_literals_only");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, index, subject, expected) in [
        ("10k-hit", &index, "mem.123.4", 1),
        ("10k-miss", &index, "mem.123.45", 0),
        ("1-bench", &single, "bench", 1),
    ] {
        assert_eq!(index.matches(subject).len(), expected, "{subject}");
        group.bench_with_input(BenchmarkId::new("index", name), subject, |b, subject| {
            b.iter(|| {
                let mut hits = 0u64;
                index.for_each_match(black_box(subject), |_, key| hits += *key);
                hits
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_matching, bench_literal_only);
criterion_main!(benches);
