//! Raw TCP baselines: no framework, 4-byte little-endian length framing.
//!
//! `Tcp<false>` goes through `role tcp-hub`, a minimal relay with the same process layout as
//! the brokers (publisher frames to every subscriber, caller frames to the echo service and
//! back). `Tcp<true>` connects the two load processes straight to each other: the side that
//! subscribes or serves listens on the case's address and the other side connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{AbortOnDrop, Adapter, Caller, Filter, Msg, Pending, Publisher, Subscription};

/// Hello bytes a client sends the relay hub first.
const PUBLISHER: u8 = b'P';
const SUBSCRIBER: u8 = b'S';
const SERVICE: u8 = b'E';
const CALLER: u8 = b'C';
/// The hub's answer once the client is registered.
const ACK: u8 = b'K';

const BUFFER: usize = 64 * 1024;

/// Reads length-prefixed frames; `next` is cancel-safe (it only ever awaits `read_buf`).
#[derive(Debug)]
pub(crate) struct FrameReader {
    r: OwnedReadHalf,
    buf: BytesMut,
}

impl FrameReader {
    fn new(r: OwnedReadHalf) -> Self {
        Self {
            r,
            buf: BytesMut::with_capacity(BUFFER),
        }
    }

    /// The next whole frame, length prefix included; `None` at EOF.
    async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if self.buf.len() >= 4 + len {
                    return Ok(Some(self.buf.split_to(4 + len).freeze()));
                }
                self.buf.reserve((4 + len).max(BUFFER));
            } else {
                self.buf.reserve(BUFFER);
            }
            if self.r.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Every whole frame buffered now (at least one), as one chunk; `None` at EOF. The
    /// relay forwards chunks, not frames: one channel send and one write per batch.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let mut end = 0;
            while self.buf.len() >= end + 4 {
                let b = &self.buf[end..end + 4];
                let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if self.buf.len() < end + 4 + len {
                    break;
                }
                end += 4 + len;
            }
            if end > 0 {
                return Ok(Some(self.buf.split_to(end).freeze()));
            }
            self.buf.reserve(BUFFER);
            if self.r.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    fn is_drained(&self) -> bool {
        self.buf.is_empty()
    }
}

async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, payload: &[u8]) -> Result<()> {
    w.write_all(&u32::try_from(payload.len())?.to_le_bytes())
        .await?;
    w.write_all(payload).await?;
    Ok(())
}

async fn connect(addr: &str) -> Result<TcpStream> {
    // In direct mode the other side may still be on its way to `listen`.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Connects to the relay hub as `kind` and waits for its acknowledgement.
async fn hello(addr: &str, kind: u8) -> Result<TcpStream> {
    let mut s = connect(addr).await?;
    s.write_all(&[kind]).await?;
    if s.read_u8().await? != ACK {
        bail!("tcp hub refused us");
    }
    Ok(s)
}

/// Echoes frames back until EOF, flushing whenever no more input is buffered.
async fn echo(stream: TcpStream) -> Result<()> {
    let (r, w) = stream.into_split();
    let mut reader = FrameReader::new(r);
    let mut w = BufWriter::with_capacity(BUFFER, w);
    while let Some(frame) = reader.next().await? {
        w.write_all(&frame).await?;
        if reader.is_drained() {
            w.flush().await?;
        }
    }
    Ok(())
}

/// The echo server of `role tcp-echo` and of W2 in direct mode: serves every connection.
pub(crate) async fn echo_server(listener: TcpListener) {
    while let Ok((s, _)) = listener.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(echo(s));
    }
}

/// A raw TCP "connection": the address; each operation opens its own socket.
#[derive(Debug)]
pub(crate) struct Tcp<const DIRECT: bool> {
    addr: String,
}

/// Writes frames into a 64 KiB buffer, flushed when full or on `flush`.
#[derive(Debug)]
pub(crate) struct TcpPub(BufWriter<TcpStream>);

/// Reads frames; in direct mode accepts the publisher's connection first.
#[derive(Debug)]
pub(crate) enum TcpSub {
    /// Waiting for the publisher (direct mode).
    Listening(TcpListener),
    /// Reading (the write half is kept so the socket stays open both ways).
    Reading {
        reader: FrameReader,
        _write: OwnedWriteHalf,
    },
}

/// Multiplexes calls over one socket, correlated by sequence number.
#[derive(Debug, Clone)]
pub(crate) struct TcpCaller {
    w: Arc<tokio::sync::Mutex<BufWriter<OwnedWriteHalf>>>,
    pending: Pending,
    _reader: Arc<AbortOnDrop>,
}

impl<const DIRECT: bool> Adapter for Tcp<DIRECT> {
    type Pub = TcpPub;
    type Sub = TcpSub;
    type Caller = TcpCaller;
    type Guard = AbortOnDrop;

    async fn connect(addr: &str) -> Result<Self> {
        Ok(Self {
            addr: addr.to_owned(),
        })
    }

    async fn publisher(&self) -> Result<TcpPub> {
        let s = if DIRECT {
            connect(&self.addr).await?
        } else {
            hello(&self.addr, PUBLISHER).await?
        };
        Ok(TcpPub(BufWriter::with_capacity(BUFFER, s)))
    }

    async fn subscribe(&self, filter: Filter<'_>, _with_subjects: bool) -> Result<TcpSub> {
        if matches!(filter, Filter::All) {
            bail!("raw TCP has no subjects");
        }
        if DIRECT {
            return Ok(TcpSub::Listening(TcpListener::bind(&self.addr).await?));
        }
        let (r, w) = hello(&self.addr, SUBSCRIBER).await?.into_split();
        Ok(TcpSub::Reading {
            reader: FrameReader::new(r),
            _write: w,
        })
    }

    async fn snapshot(&self) -> Result<TcpSub> {
        bail!("raw TCP has no cached values")
    }

    async fn serve_echo(&self) -> Result<AbortOnDrop> {
        let task = if DIRECT {
            tokio::spawn(echo_server(TcpListener::bind(&self.addr).await?))
        } else {
            let s = hello(&self.addr, SERVICE).await?;
            tokio::spawn(async move {
                let _ = echo(s).await;
            })
        };
        Ok(AbortOnDrop(task))
    }

    async fn caller(&self) -> Result<TcpCaller> {
        let s = if DIRECT {
            connect(&self.addr).await?
        } else {
            hello(&self.addr, CALLER).await?
        };
        let (r, w) = s.into_split();
        let pending = Pending::default();
        let replies = pending.clone();
        let reader = tokio::spawn(async move {
            let mut reader = FrameReader::new(r);
            while let Ok(Some(frame)) = reader.next().await {
                replies.complete(frame.slice(4..));
            }
        });
        Ok(TcpCaller {
            w: Arc::new(tokio::sync::Mutex::new(BufWriter::new(w))),
            pending,
            _reader: Arc::new(AbortOnDrop(reader)),
        })
    }

    async fn hold(&self, _subjects: Vec<String>) -> Result<AbortOnDrop> {
        bail!("raw TCP has no subscriptions")
    }

    async fn hold_more(&self, _guard: &mut AbortOnDrop, _subjects: Vec<String>) -> Result<()> {
        bail!("raw TCP has no subscriptions")
    }
}

impl Publisher for TcpPub {
    async fn publish(&mut self, _subject: &str, payload: Bytes) -> Result<()> {
        write_frame(&mut self.0, &payload).await
    }

    async fn store(&mut self, _subject: &str, _payload: Bytes) -> Result<()> {
        bail!("raw TCP has no cached values")
    }

    async fn flush(&mut self) -> Result<()> {
        self.0.flush().await?;
        Ok(())
    }
}

impl Subscription for TcpSub {
    async fn next(&mut self) -> Result<Option<Msg>> {
        if let Self::Listening(listener) = self {
            let (s, _) = listener.accept().await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            *self = Self::Reading {
                reader: FrameReader::new(r),
                _write: w,
            };
        }
        let Self::Reading { reader, .. } = self else {
            unreachable!("set above")
        };
        Ok(reader.next().await?.map(|frame| Msg {
            subject: None,
            header: frame.get(4..).and_then(crate::payload::parse),
        }))
    }
}

impl Caller for TcpCaller {
    async fn call(&self, payload: Bytes) -> Result<Bytes> {
        let rx = self.pending.register(&payload)?;
        {
            let mut w = self.w.lock().await;
            write_frame(&mut *w, &payload).await?;
            w.flush().await?;
        }
        Pending::wait(rx).await
    }
}

/// Who the relay hub forwards to.
#[derive(Debug, Default)]
struct Routes {
    subscribers: Vec<mpsc::Sender<Bytes>>,
    service: Option<mpsc::Sender<Bytes>>,
    caller: Option<mpsc::Sender<Bytes>>,
}

/// `role tcp-hub`: the minimal relay. Every connection gets a writer task fed by a bounded
/// channel (so a slow reader slows the sender down, nothing is dropped); whatever whole
/// frames arrived together are forwarded as one chunk, length prefixes included, without
/// copying.
pub(crate) async fn hub_role(listen: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    crate::proc::ready(listener.local_addr()?);
    let routes = Arc::new(Mutex::new(Routes::default()));
    let generation = Arc::new(AtomicU64::new(0));
    loop {
        let (s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let (routes, generation) = (routes.clone(), generation.clone());
        tokio::spawn(async move {
            if let Err(e) = relay(s, routes, generation).await {
                eprintln!("tcp-hub: {e:#}");
            }
        });
    }
}

async fn relay(s: TcpStream, routes: Arc<Mutex<Routes>>, generation: Arc<AtomicU64>) -> Result<()> {
    let (mut r, w) = s.into_split();
    let Ok(kind) = r.read_u8().await else {
        // A connection that closes without a word: the orchestrator checking the port.
        return Ok(());
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
    tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(BUFFER, w);
        while let Some(b) = rx.recv().await {
            if w.write_all(&b).await.is_err() {
                return;
            }
            while let Ok(b) = rx.try_recv() {
                if w.write_all(&b).await.is_err() {
                    return;
                }
            }
            if w.flush().await.is_err() {
                return;
            }
        }
    });
    {
        let mut routes = routes.lock();
        match kind {
            SUBSCRIBER => routes.subscribers.push(tx.clone()),
            SERVICE => routes.service = Some(tx.clone()),
            CALLER => routes.caller = Some(tx.clone()),
            PUBLISHER => {}
            other => bail!("unknown hello {other}"),
        }
        generation.fetch_add(1, Ordering::Release);
    }
    tx.send(Bytes::from_static(&[ACK])).await?;
    let targets_of = |routes: &Routes| -> Vec<mpsc::Sender<Bytes>> {
        match kind {
            PUBLISHER => routes.subscribers.clone(),
            CALLER => routes.service.iter().cloned().collect(),
            SERVICE => routes.caller.iter().cloned().collect(),
            _ => Vec::new(),
        }
    };
    let mut seen = u64::MAX;
    let mut targets = Vec::new();
    let mut reader = FrameReader::new(r);
    while let Some(frame) = reader.next_chunk().await? {
        let now = generation.load(Ordering::Acquire);
        if now != seen {
            seen = now;
            targets = targets_of(&routes.lock());
        }
        for t in &targets {
            // A closed subscriber is simply skipped.
            let _ = t.send(frame.clone()).await;
        }
    }
    Ok(())
}
