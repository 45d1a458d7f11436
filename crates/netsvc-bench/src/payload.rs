//! The one payload generator every system gets: sequence number, send timestamp, padding.
//!
//! Layout (little endian): bytes 0..8 the sequence number, whose top bit marks a warm-up
//! message; bytes 8..16 the send time in nanoseconds since the Unix epoch (the wall clock,
//! so that it means the same in every process of the run); then zero padding up to the
//! requested size. The smallest payload is therefore 16 bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes taken by the header; also the smallest payload.
pub(crate) const HEADER: usize = 16;

/// Set in the sequence number of warm-up messages, which receivers do not count.
pub(crate) const WARMUP: u64 = 1 << 63;

/// The wall clock in nanoseconds since the Unix epoch, comparable across processes.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A payload of `size` bytes (at least [`HEADER`]) carrying `seq` and the current time.
pub(crate) fn make(seq: u64, size: usize) -> Bytes {
    let size = size.max(HEADER);
    let mut b = BytesMut::with_capacity(size);
    b.put_u64_le(seq);
    b.put_u64_le(now_ns());
    b.resize(size, 0);
    b.freeze()
}

/// The header of a payload, if it is long enough to have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Sequence number, warm-up bit included.
    pub(crate) seq: u64,
    /// Send time (ns since the Unix epoch).
    pub(crate) sent_ns: u64,
}

impl Header {
    /// Whether this is a warm-up message.
    pub(crate) fn is_warmup(self) -> bool {
        self.seq & WARMUP != 0
    }
}

/// Reads the header of a payload.
pub(crate) fn parse(payload: &[u8]) -> Option<Header> {
    let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let sent_ns = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some(Header { seq, sent_ns })
}

/// A set of sequence numbers: counts distinct ones and duplicates without a hash map.
#[derive(Debug, Default)]
pub(crate) struct SeqSet {
    bits: Vec<u64>,
    /// Distinct sequence numbers seen.
    pub(crate) distinct: u64,
    /// Sequence numbers seen more than once (each extra copy counts).
    pub(crate) duplicates: u64,
}

impl SeqSet {
    /// Records `seq`; returns false if it was already there.
    pub(crate) fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize((word + 1).next_power_of_two(), 0);
        }
        let mask = 1u64 << bit;
        if self.bits[word] & mask != 0 {
            self.duplicates += 1;
            false
        } else {
            self.bits[word] |= mask;
            self.distinct += 1;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = make(42, 16);
        assert_eq!(p.len(), 16);
        let h = parse(&p).unwrap();
        assert_eq!(h.seq, 42);
        assert!(!h.is_warmup());
        assert!(h.sent_ns > 0);
        assert_eq!(make(7 | WARMUP, 1024).len(), 1024);
        assert!(parse(&make(7 | WARMUP, 3)).unwrap().is_warmup());
        assert!(parse(&[0; 15]).is_none());
    }

    #[test]
    fn seq_set() {
        let mut s = SeqSet::default();
        assert!(s.insert(0));
        assert!(s.insert(1000));
        assert!(!s.insert(1000));
        assert_eq!((s.distinct, s.duplicates), (2, 1));
    }
}
