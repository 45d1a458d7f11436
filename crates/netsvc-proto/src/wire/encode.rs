//! Frame encoding: MessagePack written straight into the output buffer.

use bytes::{BufMut, BytesMut};

use super::{Frame, Hello, MAGIC, Text, frame};

/// Appends the frame (length prefix included) to `out`; returns the number of bytes appended.
///
/// Integers are written in their smallest MessagePack form, so equal frames always encode to
/// equal bytes. The frame is not checked against any size limit: compare the returned size
/// (minus the 4-byte prefix) with the peer's `max_frame` if it matters.
///
/// # Panics
///
/// If a string, payload or list is longer than `u32::MAX` bytes or elements, or the whole
/// body is, since MessagePack and the length prefix cannot express such sizes. Frames within
/// any sensible `max_frame` are far below this.
pub fn encode(frame: &Frame, out: &mut BytesMut) -> usize {
    let start = out.len();
    out.reserve(4 + estimate(frame));
    // The body's length is only known once it is written; patch the prefix afterwards
    // rather than encoding twice.
    out.put_u32(0);
    let mut w = Writer(out);
    match frame {
        Frame::Hello(hello) => w.hello(hello),
        Frame::Close(frame::Close { code, reason }) => {
            w.header(frame.kind(), 2);
            w.uint(u64::from(code.code()));
            w.text(reason);
        }
        Frame::Heartbeat | Frame::Synced => w.header(frame.kind(), 0),
        Frame::Service(frame::Service {
            address,
            name,
            audience,
            groups,
            version,
            path,
        }) => {
            w.header(frame.kind(), 6);
            w.text(address);
            w.text(name);
            w.text(audience);
            w.texts(groups);
            w.uint(*version);
            w.texts(path);
        }
        Frame::Withdraw(frame::Withdraw { address, reason }) => {
            w.header(frame.kind(), 2);
            w.text(address);
            w.uint(u64::from(*reason));
        }
        Frame::Interest(frame::Interest { seq, all, names }) => {
            w.header(frame.kind(), 3);
            w.uint(*seq);
            w.bool(*all);
            w.texts(names);
        }
        Frame::Interested(frame::Interested { seq }) => {
            w.header(frame.kind(), 1);
            w.uint(*seq);
        }
        Frame::Request(frame::Request {
            conv,
            to,
            from,
            method,
            timeout_ms,
            args,
            user,
        }) => {
            // `user` is a trailing element, present only when set (see `paced`).
            w.header(frame.kind(), if user.is_some() { 7 } else { 6 });
            w.uint(*conv);
            w.text(to);
            match from {
                Some(from) => w.text(from),
                None => w.nil(),
            }
            w.text(method);
            w.uint(*timeout_ms);
            w.bin(args);
            if let Some(user) = user {
                w.text(user);
            }
        }
        Frame::Response(frame::Response { conv, result }) => {
            w.header(frame.kind(), 2);
            w.uint(*conv);
            w.bin(result);
        }
        Frame::Failure(frame::Failure {
            conv,
            error,
            description,
            origin,
            details,
            withdrawn,
        }) => {
            // `withdrawn` is a trailing element, present only when true (see `paced`).
            w.header(frame.kind(), if *withdrawn { 6 } else { 5 });
            w.uint(*conv);
            w.int(i64::from(*error));
            w.text(description);
            w.text(origin);
            w.text(details);
            if *withdrawn {
                w.bool(true);
            }
        }
        Frame::Cancel(frame::Cancel { conv }) => {
            w.header(frame.kind(), 1);
            w.uint(*conv);
        }
        Frame::Subscribe(frame::Subscribe {
            sid,
            publisher,
            subscriber,
            pattern,
        }) => {
            w.header(frame.kind(), 4);
            w.uint(*sid);
            w.text(publisher);
            w.text(subscriber);
            w.text(pattern);
        }
        Frame::Subscribed(frame::Subscribed { sid, refused }) => {
            // `refused` is a trailing element, present only when true (see `paced`).
            w.header(frame.kind(), if *refused { 2 } else { 1 });
            w.uint(*sid);
            if *refused {
                w.bool(true);
            }
        }
        Frame::Unsubscribe(frame::Unsubscribe { sid }) => {
            w.header(frame.kind(), 1);
            w.uint(*sid);
        }
        Frame::Report(frame::Report {
            publisher,
            subject,
            seq,
            payload,
            paced,
        }) => w.report(
            publisher.as_bytes(),
            subject.as_bytes(),
            *seq,
            payload,
            *paced,
        ),
        Frame::Targeted(frame::Targeted {
            sid,
            subject,
            seq,
            pattern,
            targeted,
            payload,
        }) => {
            w.header(frame.kind(), 6);
            w.uint(*sid);
            w.text(subject);
            w.uint(*seq);
            match pattern {
                Some(pattern) => w.text(pattern),
                None => w.nil(),
            }
            w.bool(*targeted);
            w.bin(payload);
        }
        Frame::Missed(frame::Missed { publisher, count }) => {
            w.header(frame.kind(), 2);
            w.text(publisher);
            w.uint(*count);
        }
    }
    let len = out.len() - start;
    let body = u32::try_from(len - 4).expect("frame body longer than u32::MAX bytes");
    out[start..start + 4].copy_from_slice(&body.to_be_bytes());
    len
}

/// Appends a REPORT frame built from borrowed parts; the bytes are those [`encode`] writes
/// for the equal [`Frame::Report`]. A publisher encodes each report once and copies the bytes
/// to every link it goes to, so it skips building an owned frame (and its allocations).
pub fn encode_report(
    publisher: &str,
    subject: &str,
    seq: u64,
    payload: &[u8],
    paced: bool,
    out: &mut BytesMut,
) -> usize {
    let start = out.len();
    out.reserve(4 + 17 + publisher.len() + subject.len() + payload.len());
    out.put_u32(0);
    Writer(out).report(
        publisher.as_bytes(),
        subject.as_bytes(),
        seq,
        payload,
        paced,
    );
    let len = out.len() - start;
    let body = u32::try_from(len - 4).expect("frame body longer than u32::MAX bytes");
    out[start..start + 4].copy_from_slice(&body.to_be_bytes());
    len
}

/// A close upper bound of a frame's encoded size (body and length prefix), computed without
/// encoding it: the encoder reserves this much so the output grows at most once per frame,
/// and queues use it to account for frames they hold unencoded.
pub fn size_bound(frame: &Frame) -> usize {
    4 + estimate(frame)
}

/// A close upper bound of the body size.
fn estimate(frame: &Frame) -> usize {
    // Per field: a 9-byte integer or a 5-byte string/bin header at most.
    const FIELD: usize = 9;
    let texts = |ts: &[Text]| ts.iter().map(|t| t.len() + 5).sum::<usize>() + 5;
    8 * FIELD
        + match frame {
            Frame::Hello(h) => {
                MAGIC.len()
                    + h.group.len()
                    + h.process.len()
                    + h.options
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 10)
                        .sum::<usize>()
            }
            Frame::Close(frame::Close { reason, .. }) => reason.len(),
            Frame::Heartbeat
            | Frame::Synced
            | Frame::Interested(frame::Interested { .. })
            | Frame::Cancel(frame::Cancel { .. })
            | Frame::Subscribed(frame::Subscribed { .. })
            | Frame::Unsubscribe(frame::Unsubscribe { .. }) => 0,
            Frame::Service(frame::Service {
                address,
                name,
                audience,
                groups,
                path,
                ..
            }) => address.len() + name.len() + audience.len() + texts(groups) + texts(path),
            Frame::Withdraw(frame::Withdraw { address, .. }) => address.len(),
            Frame::Interest(frame::Interest { names, .. }) => texts(names),
            Frame::Request(frame::Request {
                to,
                from,
                method,
                args,
                user,
                ..
            }) => {
                to.len()
                    + from.as_ref().map_or(0, Text::len)
                    + method.len()
                    + args.len()
                    + user.as_ref().map_or(0, Text::len)
            }
            Frame::Response(frame::Response { result, .. }) => result.len(),
            Frame::Failure(frame::Failure {
                description,
                origin,
                details,
                ..
            }) => description.len() + origin.len() + details.len(),
            Frame::Subscribe(frame::Subscribe {
                publisher,
                subscriber,
                pattern,
                ..
            }) => publisher.len() + subscriber.len() + pattern.len(),
            Frame::Report(frame::Report {
                publisher,
                subject,
                payload,
                ..
            }) => publisher.len() + subject.len() + payload.len(),
            Frame::Targeted(frame::Targeted {
                subject,
                pattern,
                payload,
                ..
            }) => subject.len() + pattern.as_ref().map_or(0, Text::len) + payload.len(),
            Frame::Missed(frame::Missed { publisher, .. }) => publisher.len(),
        }
}

/// Writes MessagePack in its smallest forms.
struct Writer<'a>(&'a mut BytesMut);

impl Writer<'_> {
    /// Opens the body array: the kind and then `fields` more elements.
    fn header(&mut self, kind: u8, fields: u32) {
        self.array(fields + 1);
        self.uint(u64::from(kind));
    }

    fn hello(&mut self, h: &Hello) {
        self.header(super::kind::HELLO, 9);
        self.str(MAGIC.as_bytes());
        self.uint(u64::from(h.version));
        self.str(h.role.as_str().as_bytes());
        self.text(&h.group);
        self.text(&h.process);
        self.uint(h.incarnation);
        self.uint(u64::from(h.heartbeat_ms));
        self.uint(u64::from(h.max_frame));
        self.map(len32(h.options.len()));
        for (key, value) in &h.options {
            self.text(key);
            self.text(value);
        }
    }

    fn array(&mut self, len: u32) {
        match len {
            0..=15 => self.0.put_u8(0x90 | len as u8),
            16..=0xffff => {
                self.0.put_u8(0xdc);
                self.0.put_u16(len as u16);
            }
            _ => {
                self.0.put_u8(0xdd);
                self.0.put_u32(len);
            }
        }
    }

    fn map(&mut self, len: u32) {
        match len {
            0..=15 => self.0.put_u8(0x80 | len as u8),
            16..=0xffff => {
                self.0.put_u8(0xde);
                self.0.put_u16(len as u16);
            }
            _ => {
                self.0.put_u8(0xdf);
                self.0.put_u32(len);
            }
        }
    }

    fn uint(&mut self, n: u64) {
        if n <= 0x7f {
            self.0.put_u8(n as u8);
        } else if let Ok(n) = u8::try_from(n) {
            self.0.put_u8(0xcc);
            self.0.put_u8(n);
        } else if let Ok(n) = u16::try_from(n) {
            self.0.put_u8(0xcd);
            self.0.put_u16(n);
        } else if let Ok(n) = u32::try_from(n) {
            self.0.put_u8(0xce);
            self.0.put_u32(n);
        } else {
            self.0.put_u8(0xcf);
            self.0.put_u64(n);
        }
    }

    fn int(&mut self, n: i64) {
        if let Ok(n) = u64::try_from(n) {
            self.uint(n);
        } else if n >= -32 {
            self.0.put_i8(n as i8);
        } else if let Ok(n) = i8::try_from(n) {
            self.0.put_u8(0xd0);
            self.0.put_i8(n);
        } else if let Ok(n) = i16::try_from(n) {
            self.0.put_u8(0xd1);
            self.0.put_i16(n);
        } else if let Ok(n) = i32::try_from(n) {
            self.0.put_u8(0xd2);
            self.0.put_i32(n);
        } else {
            self.0.put_u8(0xd3);
            self.0.put_i64(n);
        }
    }

    fn nil(&mut self) {
        self.0.put_u8(0xc0);
    }

    fn report(&mut self, publisher: &[u8], subject: &[u8], seq: u64, payload: &[u8], paced: bool) {
        // `paced` is a trailing element, present only when true: readers that predate it
        // skip it, and unpaced reports stay a byte shorter.
        self.header(super::kind::REPORT, if paced { 5 } else { 4 });
        self.str(publisher);
        self.str(subject);
        self.uint(seq);
        self.bin(payload);
        if paced {
            self.bool(true);
        }
    }

    fn bool(&mut self, b: bool) {
        self.0.put_u8(if b { 0xc3 } else { 0xc2 });
    }

    fn text(&mut self, t: &Text) {
        self.str(t.as_bytes());
    }

    fn str(&mut self, s: &[u8]) {
        let len = len32(s.len());
        match len {
            0..=31 => self.0.put_u8(0xa0 | len as u8),
            32..=0xff => {
                self.0.put_u8(0xd9);
                self.0.put_u8(len as u8);
            }
            0x100..=0xffff => {
                self.0.put_u8(0xda);
                self.0.put_u16(len as u16);
            }
            _ => {
                self.0.put_u8(0xdb);
                self.0.put_u32(len);
            }
        }
        self.0.put_slice(s);
    }

    fn texts(&mut self, ts: &[Text]) {
        self.array(len32(ts.len()));
        for t in ts {
            self.text(t);
        }
    }

    fn bin(&mut self, b: &[u8]) {
        let len = len32(b.len());
        match len {
            0..=0xff => {
                self.0.put_u8(0xc4);
                self.0.put_u8(len as u8);
            }
            0x100..=0xffff => {
                self.0.put_u8(0xc5);
                self.0.put_u16(len as u16);
            }
            _ => {
                self.0.put_u8(0xc6);
                self.0.put_u32(len);
            }
        }
        self.0.put_slice(b);
    }
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).expect("string, payload or list longer than u32::MAX")
}
