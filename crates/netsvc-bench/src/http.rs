//! A minimal HTTP/1.1 client for the gateway workload: `POST` with a `Content-Length` body on
//! a keep-alive connection, replies read by `Content-Length` (or to the end of the
//! connection when they have none). It is all the gateways need (netsvc's and the
//! original's), and it keeps the load process's own cost small and the same for both, which
//! a general client with a connection pool would not.
//!
//! A reply that closes the connection (HTTP/1.0 without `keep-alive`, or `Connection:
//! close`, as every reply of the original gateway) makes the next request open a new
//! connection, as any client would have to.

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Larger reply heads are refused: the gateways send a handful of short headers.
const MAX_HEAD: usize = 16 * 1024;
/// Larger reply bodies are refused: the workload's replies are a few hundred bytes.
const MAX_BODY: usize = 1024 * 1024;

/// One reply.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: u16,
    /// The body.
    pub(crate) body: Vec<u8>,
}

/// A client of one HTTP server, with at most one connection, reused while the server keeps
/// it open.
#[derive(Debug)]
pub(crate) struct Client {
    addr: String,
    host_header: String,
    stream: Option<TcpStream>,
    /// Bytes read past the end of the previous reply (a server may not send them, but
    /// nothing is lost if it does).
    buf: Vec<u8>,
    request: Vec<u8>,
    /// Connections opened so far.
    pub(crate) connects: u64,
}

impl Client {
    /// A client of the server at `addr` (`HOST:PORT`); connects on the first request.
    pub(crate) fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            host_header: addr.to_owned(),
            stream: None,
            buf: Vec::with_capacity(4096),
            request: Vec::with_capacity(1024),
            connects: 0,
        }
    }

    /// `POST path` with `body` of type `content_type`, and its reply.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Reply> {
        self.request.clear();
        self.request.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                self.host_header,
                body.len()
            )
            .as_bytes(),
        );
        self.request.extend_from_slice(body);
        self.connect().await?;
        let mut stream = self.stream.take().context("connected")?;
        stream.write_all(&self.request).await?;
        let (reply, keep_alive) = self.read_reply(&mut stream).await?;
        if keep_alive {
            self.stream = Some(stream);
        }
        Ok(reply)
    }

    /// Opens the connection unless one is open.
    pub(crate) async fn connect(&mut self) -> Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            self.connects += 1;
            self.buf.clear();
            self.stream = Some(stream);
        }
        Ok(())
    }

    /// Reads one reply; also says whether the connection stays open.
    async fn read_reply(&mut self, stream: &mut TcpStream) -> Result<(Reply, bool)> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            ensure!(
                self.buf.len() <= MAX_HEAD,
                "reply head over {MAX_HEAD} bytes"
            );
            if read_more(stream, &mut self.buf).await? == 0 {
                bail!("connection closed before the reply's head ended");
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("reply head not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut words = status_line.split_whitespace();
        let version = words.next().unwrap_or("");
        let status: u16 = words
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        let mut connection = None;
        for line in lines.filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                bail!("bad header line {line:?}");
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("bad Content-Length")?);
            } else if name.eq_ignore_ascii_case("connection") {
                connection = Some(value.to_ascii_lowercase());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked replies are not expected from the gateways");
            }
        }
        let keep_alive = match connection.as_deref() {
            Some("close") => false,
            Some("keep-alive") => true,
            _ => version == "HTTP/1.1",
        };
        self.buf.drain(..head_end);
        let body = match length {
            Some(n) => {
                ensure!(n <= MAX_BODY, "reply body of {n} bytes");
                while self.buf.len() < n {
                    if read_more(stream, &mut self.buf).await? == 0 {
                        bail!("connection closed inside the reply's body");
                    }
                }
                self.buf.drain(..n).collect()
            }
            // No length: the body ends with the connection.
            None => {
                while read_more(stream, &mut self.buf).await? > 0 {
                    ensure!(
                        self.buf.len() <= MAX_BODY,
                        "reply body over {MAX_BODY} bytes"
                    );
                }
                return Ok((
                    Reply {
                        status,
                        body: std::mem::take(&mut self.buf),
                    },
                    false,
                ));
            }
        };
        Ok((Reply { status, body }, keep_alive))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize> {
    buf.reserve(4096);
    Ok(stream.read_buf(buf).await?)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server on loopback that answers each request on a connection with the next of
    /// `replies` (closing after the last one of a connection's list); counts connections.
    async fn server(per_connection: Vec<Vec<&'static str>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            for replies in per_connection {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut buf = Vec::new();
                for reply in replies {
                    // Read one request: its head, then its Content-Length body.
                    loop {
                        if let Some(end) = find(&buf, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let length: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .expect("request has a Content-Length");
                            if buf.len() >= end + 4 + length {
                                buf.drain(..end + 4 + length);
                                break;
                            }
                        }
                        assert!(stream.read_buf(&mut buf).await.expect("read") > 0);
                    }
                    stream.write_all(reply.as_bytes()).await.expect("write");
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn keeps_alive_reconnects_after_close_and_reads_to_eof() {
        let addr = server(vec![
            vec![
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none",
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo",
            ],
            // The original's form: HTTP/1.0, so it closes even without the header.
            vec!["HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nthree"],
            vec!["HTTP/1.1 404 Not Found\r\n\r\nfour, to the end"],
        ])
        .await;
        let mut client = Client::new(&addr);
        let mut bodies = Vec::new();
        for _ in 0..4 {
            let reply = client
                .post("/x", "application/json", b"{}")
                .await
                .expect("reply");
            bodies.push((reply.status, String::from_utf8(reply.body).expect("UTF-8")));
        }
        assert_eq!(
            bodies,
            [
                (200, "one".to_owned()),
                (200, "two".to_owned()),
                (200, "three".to_owned()),
                (404, "four, to the end".to_owned()),
            ]
        );
        // Two requests on the first connection, then one on each of the others.
        assert_eq!(client.connects, 3);
    }

    #[tokio::test]
    async fn a_reply_cut_short_is_an_error() {
        let addr = server(vec![vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        ]])
        .await;
        let mut client = Client::new(&addr);
        let err = client
            .post("/x", "application/json", b"{}")
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("inside the reply's body"),
            "{err:#}"
        );
    }
}
