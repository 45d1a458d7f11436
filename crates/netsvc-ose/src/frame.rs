//! OSE frames: the original's "MESSAGE" framing, sans-IO.
//!
//! A frame is the magic `AA AA 30 33`, a big-endian u32 counting every byte after it, a u32
//! protocol word (always 0), eight NUL-terminated strings (to, from, subject, header,
//! conversation id, sequence number, content type, event type) and the content, which may
//! hold any bytes. The original enforces no size limit; here every frame is bounded before a
//! byte of it is buffered beyond the limit.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The four bytes every OSE frame starts with.
pub const MAGIC: [u8; 4] = [0xAA, 0xAA, 0x30, 0x33];

/// Bytes before the frame's counted part: the magic and the length.
const PREFIX: usize = 8;

/// The largest frame accepted by default, counted as the length field counts (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The field names in wire order, for error messages.
const FIELDS: [&str; 8] = [
    "to",
    "from",
    "subject",
    "header",
    "conversation id",
    "sequence number",
    "content type",
    "event type",
];

/// One frame, decoded: the original calls it an envelope once it is inside a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The receiver's address, relative to the receiving endpoint.
    pub to: String,
    /// The sender's address, with the sending endpoint's id in front.
    pub from: String,
    /// What the frame is (`$S::REQUEST`, `$E::SERVICE-AVAILABLE`, …).
    pub subject: String,
    /// `Key: value\n` lines.
    pub header: String,
    /// The conversation the frame belongs to.
    pub conversation: String,
    /// Its place in the conversation.
    pub sequence: u32,
    /// `text/xml` for a payload, empty otherwise.
    pub content_type: String,
    /// Always empty in practice; kept so that a frame re-encodes to the same bytes.
    pub event_type: String,
    /// The content: a NET-RPC XML payload, the fields of an announcement, or nothing.
    pub content: Bytes,
}

impl Envelope {
    /// The value of header line `key`, matched as the original does: by its exact `"Key: "`
    /// prefix, the value running to the end of the line.
    pub fn header_value(&self, key: &str) -> Option<&str> {
        self.header.split('\n').find_map(|line| {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(": "))
        })
    }

    /// Appends the frame's bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let strings = [
            self.to.as_str(),
            &self.from,
            &self.subject,
            &self.header,
            &self.conversation,
            &self.sequence.to_string(),
            &self.content_type,
            &self.event_type,
        ];
        let length = 4 + strings.iter().map(|s| s.len() + 1).sum::<usize>() + self.content.len();
        out.reserve(PREFIX + length);
        out.put_slice(&MAGIC);
        // A frame too long for the u32 cannot be built from this crate's callers (their
        // payloads are bounded far below it); saturating keeps the encoder total.
        out.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
        out.put_u32(0);
        for s in strings {
            // NUL ends a field; one inside a field would shift every field after it, so it
            // is dropped (no address, header or id of ours holds one).
            out.extend(s.bytes().filter(|&b| b != 0));
            out.put_u8(0);
        }
        out.put_slice(&self.content);
    }

    /// The frame's bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// Why bytes are not an OSE frame. Each ends the connection, as in the original.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream does not start with the OSE magic: not an OSE peer, or it lost sync.
    #[error("not an OSE frame: it starts with {0:02x?}, not aa aa 30 33")]
    BadMagic([u8; 4]),
    /// A protocol word other than 0.
    #[error("unknown OSE protocol {0} (only 0 exists)")]
    Protocol(u32),
    /// Longer than the limit.
    #[error("OSE frame of {length} bytes is over the limit of {max}")]
    TooLarge {
        /// The frame's length field.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A string field runs past the end of the frame.
    #[error("OSE frame ends inside its {0} field")]
    Truncated(&'static str),
    /// A string field is not UTF-8.
    #[error("OSE frame's {0} field is not UTF-8")]
    NotUtf8(&'static str),
    /// The sequence number is not a decimal u32.
    #[error("OSE frame's sequence number {0:?} is not a number")]
    Sequence(String),
}

/// Splits a byte stream into frames. Bytes go in as they arrive; each complete frame comes
/// out once; a frame's bytes are held only once its length is known to be within the limit.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    max_frame: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder accepting frames up to `max_frame` bytes (as the length field counts).
    pub fn new(max_frame: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_frame,
        }
    }

    /// The buffer to read into: whatever is read is appended to it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Whether bytes of an unfinished frame are waiting.
    pub fn has_partial(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// The next complete frame, `None` until one has arrived in full.
    pub fn next_frame(&mut self) -> Result<Option<Envelope>, FrameError> {
        let available = self.buffer.len();
        // The magic is checked as soon as its bytes are in, so that a peer speaking something
        // else is told at once rather than after it has sent a "length" worth of bytes.
        let seen = available.min(4);
        if self.buffer[..seen] != MAGIC[..seen] {
            let mut start = [0; 4];
            start[..seen].copy_from_slice(&self.buffer[..seen]);
            return Err(FrameError::BadMagic(start));
        }
        if available < PREFIX {
            return Ok(None);
        }
        let length = u32::from_be_bytes([
            self.buffer[4],
            self.buffer[5],
            self.buffer[6],
            self.buffer[7],
        ]) as usize;
        if length > self.max_frame {
            return Err(FrameError::TooLarge {
                length,
                max: self.max_frame,
            });
        }
        if available < PREFIX + length {
            self.buffer.reserve(PREFIX + length - available);
            return Ok(None);
        }
        self.buffer.advance(PREFIX);
        let body = self.buffer.split_to(length).freeze();
        decode_body(body).map(Some)
    }
}

/// Decodes the counted part of a frame (everything after the length field).
pub fn decode_body(mut body: Bytes) -> Result<Envelope, FrameError> {
    if body.len() < 4 {
        return Err(FrameError::Truncated("protocol"));
    }
    let protocol = body.get_u32();
    if protocol != 0 {
        return Err(FrameError::Protocol(protocol));
    }
    let mut strings: [String; 8] = Default::default();
    for (slot, field) in strings.iter_mut().zip(FIELDS) {
        let end = body
            .iter()
            .position(|&b| b == 0)
            .ok_or(FrameError::Truncated(field))?;
        let bytes = body.split_to(end);
        body.advance(1);
        *slot = String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::NotUtf8(field))?;
    }
    let [
        to,
        from,
        subject,
        header,
        conversation,
        sequence,
        content_type,
        event_type,
    ] = strings;
    // The original writes the number with `%d` and reads it back with `atoi`; an empty one
    // reads as 0.
    let sequence = if sequence.is_empty() {
        0
    } else {
        sequence
            .parse()
            .map_err(|_| FrameError::Sequence(sequence.chars().take(32).collect()))?
    };
    Ok(Envelope {
        to,
        from,
        subject,
        header,
        conversation,
        sequence,
        content_type,
        event_type,
        content: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame #0 of ose-wire-observed.md: a client's `$EP::ANNOUNCE`.
    const OBSERVED_ANNOUNCE: &[u8] = b"\xaa\xaa\x30\x33\x00\x00\x00\x59\x00\x00\x00\x00\x00$EP?7F000001:593F:88330001\x00$EP::ANNOUNCE\x00\x00$ID?7F000001:593F:6B061D2D:0:88330003\x000\x00\x00\x00";

    #[test]
    fn the_observed_announce_decodes_and_encodes_back() {
        let mut decoder = FrameDecoder::default();
        decoder.extend(OBSERVED_ANNOUNCE);
        let envelope = decoder.next_frame().unwrap().unwrap();
        assert_eq!(envelope.to, "");
        assert_eq!(envelope.from, "$EP?7F000001:593F:88330001");
        assert_eq!(envelope.subject, "$EP::ANNOUNCE");
        assert_eq!(
            envelope.conversation,
            "$ID?7F000001:593F:6B061D2D:0:88330003"
        );
        assert_eq!(envelope.sequence, 0);
        assert!(envelope.content.is_empty());
        assert!(!decoder.has_partial());
        assert_eq!(&envelope.to_bytes()[..], OBSERVED_ANNOUNCE);
    }

    #[test]
    fn frames_arrive_byte_by_byte() {
        let mut decoder = FrameDecoder::default();
        let mut frames = 0;
        for &b in OBSERVED_ANNOUNCE.iter().chain(OBSERVED_ANNOUNCE) {
            decoder.extend(&[b]);
            while decoder.next_frame().unwrap().is_some() {
                frames += 1;
            }
        }
        assert_eq!(frames, 2);
    }

    #[test]
    fn content_may_hold_nul_and_headers_are_matched_by_prefix() {
        let envelope = Envelope {
            subject: "$S::REPORT".into(),
            header: "SubjectName: a.b\nSubjectPattern: a.*\n".into(),
            sequence: 7,
            content: Bytes::from_static(b"x\0y"),
            ..Envelope::default()
        };
        let mut decoder = FrameDecoder::default();
        decoder.extend(&envelope.to_bytes());
        let back = decoder.next_frame().unwrap().unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.header_value("SubjectName"), Some("a.b"));
        assert_eq!(back.header_value("SubjectPattern"), Some("a.*"));
        assert_eq!(back.header_value("Subject"), None);
    }

    #[test]
    fn bad_input_is_refused_early_and_clearly() {
        let mut native = FrameDecoder::default();
        native.extend(&[0, 0, 0, 12]);
        assert_eq!(
            native.next_frame(),
            Err(FrameError::BadMagic([0, 0, 0, 12]))
        );

        let mut http = FrameDecoder::default();
        http.extend(b"G");
        assert!(matches!(http.next_frame(), Err(FrameError::BadMagic(_))));

        let mut huge = FrameDecoder::new(1024);
        huge.extend(&[0xAA, 0xAA, 0x30, 0x33, 0x7F, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            huge.next_frame(),
            Err(FrameError::TooLarge { .. })
        ));

        let mut protocol = OBSERVED_ANNOUNCE.to_vec();
        protocol[11] = 1;
        let mut decoder = FrameDecoder::default();
        decoder.extend(&protocol);
        assert_eq!(decoder.next_frame(), Err(FrameError::Protocol(1)));

        let mut short = OBSERVED_ANNOUNCE[..20].to_vec();
        short[7] = 12;
        let mut decoder = FrameDecoder::default();
        decoder.extend(&short);
        assert_eq!(decoder.next_frame(), Err(FrameError::Truncated("from")));
    }
}
