//! The subject pattern matcher on arbitrary text: `Pattern::matches` (the two-pointer glob)
//! and `PatternIndex` (the trie) must both agree with an obviously correct reference
//! matcher, for every pattern and subject, and must never panic.
//!
//! Input: lines of UTF-8. The first byte says how many of the first lines are patterns
//! (1 to 4); the remaining lines are subjects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsvc_proto::{Pattern, PatternIndex};

/// Glob matching by dynamic programming over characters: `*` any run, `?` one character.
fn reference(pattern: &str, subject: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = subject.chars().collect();
    // row[j]: whether p[..i] matches s[..j].
    let mut row = vec![false; s.len() + 1];
    row[0] = true;
    for &pc in &p {
        let mut next = vec![false; s.len() + 1];
        if pc == '*' {
            let mut any = false;
            for j in 0..=s.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 1..=s.len() {
                next[j] = row[j - 1] && (pc == '?' || pc == s[j - 1]);
            }
        }
        row = next;
    }
    row[s.len()]
}

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lines = text.split('\n');
    let mut index = PatternIndex::new();
    let mut patterns = Vec::new();
    for (key, line) in lines.by_ref().take(usize::from(count % 4) + 1).enumerate() {
        // Invalid patterns (empty, control characters, too long) are refused, not panicked on.
        let Ok(pattern) = Pattern::new(line) else {
            continue;
        };
        assert!(!pattern.as_str().contains("**"), "runs of stars are normalised");
        assert_eq!(Pattern::new(pattern.as_str()).as_ref(), Ok(&pattern), "idempotent");
        index.insert(&pattern, key);
        patterns.push((key, pattern));
    }
    for subject in lines {
        let mut expected: Vec<usize> = patterns
            .iter()
            .filter(|(_, p)| {
                let truth = reference(p.as_str(), subject);
                assert_eq!(p.matches(subject), truth, "{p:?} against {subject:?}");
                truth
            })
            .map(|(key, _)| *key)
            .collect();
        let mut found = index.matches(subject);
        expected.sort_unstable();
        found.sort_unstable();
        assert_eq!(found, expected, "index vs patterns for {subject:?}");
        assert_eq!(index.any_match(subject), !expected.is_empty());
    }
    // Removing every pattern empties the index.
    for (key, pattern) in &patterns {
        assert!(index.remove(pattern, key));
    }
    assert!(index.is_empty());
});
