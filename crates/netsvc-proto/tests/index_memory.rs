//! Heap bytes a `PatternIndex` holds per stored pattern, measured with a counting allocator.
//!
//! A hub keeps one index entry per subscription, so this is a direct part of its memory per
//! subscription. The counts are of bytes requested from the allocator (its own per-block
//! overhead comes on top). This file holds a single test on purpose: the counter is
//! process-wide, and a second test running in parallel would pollute it.
//!
//! Run with `cargo test -p netsvc-proto --test index_memory -- --nocapture` to see the numbers.

use std::alloc::System;

use netsvc_proto::{Pattern, PatternIndex};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Net heap bytes and live allocations held by the index built from `patterns`, divided by
/// the number of patterns.
fn per_pattern(patterns: &[Pattern]) -> (f64, f64) {
    let region = Region::new(GLOBAL);
    let mut index = PatternIndex::new();
    for (key, pattern) in (0u64..).zip(patterns) {
        assert!(index.insert(pattern, key));
    }
    let change = region.change();
    let bytes = change.bytes_allocated as f64 - change.bytes_deallocated as f64
        + change.bytes_reallocated as f64;
    let blocks = change.allocations as f64 - change.deallocations as f64;
    assert_eq!(index.len(), patterns.len());
    drop(index);
    let n = patterns.len() as f64;
    (bytes / n, blocks / n)
}

fn patterns(make: impl Fn(u32, u32) -> String) -> Vec<Pattern> {
    (0..1_000)
        .flat_map(|i| (0..10).map(move |j| (i, j)))
        .map(|(i, j)| Pattern::new(&make(i, j)).expect("valid pattern"))
        .collect()
}

#[test]
fn bytes_per_pattern() {
    let literal = patterns(|i, j| format!("mem.{i}.{j}"));
    let wildcard = patterns(|i, j| format!("mem.{i}.{j}.*"));
    // The patterns themselves are allocated before measuring, so only the index's own
    // memory (including its copies of the patterns) is counted.
    let (literal_bytes, literal_blocks) = per_pattern(&literal);
    let (wildcard_bytes, wildcard_blocks) = per_pattern(&wildcard);
    println!(
        "10,000 literal `mem.<i>.<j>`: {literal_bytes:.0} B and {literal_blocks:.2} heap blocks per pattern"
    );
    println!(
        "10,000 wildcard `mem.<i>.<j>.*`: {wildcard_bytes:.0} B and {wildcard_blocks:.2} heap blocks per pattern"
    );
    // Guards against regressions; measured 76 B (one map slot plus the pattern's text) and
    // 425 B when these bounds were set. Allocator rounding moves them a little, hence slack.
    assert!(literal_bytes < 120.0, "{literal_bytes}");
    assert!(wildcard_bytes < 520.0, "{wildcard_bytes}");
}
