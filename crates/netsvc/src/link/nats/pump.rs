//! One link's pump between its in-memory stream and NATS: what the link task writes goes
//! out as numbered messages, what arrives in sequence is written to the link task, and a
//! gap, the peer's end or the link's end stops both (see [`super::carrier`]).

use bytes::BytesMut;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::runtime::Handle;

use super::carrier::{Inbound, Outbound, Received};

/// Starts the pump of one link: `stream` is the pump's end of the link task's stream,
/// `to` the subject its bytes go out on, `from` the subscription they come in by.
pub(super) fn spawn(
    handle: &Handle,
    client: async_nats::Client,
    stream: DuplexStream,
    to: String,
    from: async_nats::Subscriber,
    chunk: usize,
) {
    handle.spawn(pump(client, stream, to, from, chunk));
}

async fn pump(
    client: async_nats::Client,
    stream: DuplexStream,
    to: String,
    mut from: async_nats::Subscriber,
    chunk: usize,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut outbound = Outbound::default();
    let mut inbound = Inbound::default();
    let subject = &to;
    let sending = async {
        let mut buf = BytesMut::with_capacity(chunk);
        loop {
            buf.clear();
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return "the link ended".to_owned(),
                Ok(_) => {
                    for part in buf.chunks(chunk) {
                        if let Err(e) = client.publish(subject.clone(), outbound.data(part)).await {
                            return format!("cannot publish: {e}");
                        }
                    }
                }
            }
        }
    };
    let receiving = async {
        while let Some(message) = from.next().await {
            match inbound.accept(message.payload) {
                Received::Data(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        return "the link ended".to_owned();
                    }
                }
                Received::End => return "the peer ended the link".to_owned(),
                Received::Broken(why) => return format!("link broken: {why}"),
            }
        }
        "the NATS subscription ended".to_owned()
    };
    let why = tokio::select! {
        why = sending => why,
        why = receiving => why,
    };
    tracing::debug!(subject = %to, "NATS link pump stopped: {why}");
    // Whichever side ended it, the peer is told, so that it need not wait for the link's
    // silence to know (after a gap, the link is broken in both directions).
    let _ = client.publish(to, outbound.end()).await;
    // The link task reads the end of its stream and ends (a loss, unless it ended first);
    // dropping the subscription unsubscribes.
    let _ = writer.shutdown().await;
}
