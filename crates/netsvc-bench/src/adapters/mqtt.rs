//! MQTT: mosquitto with the `rumqttc` client, QoS 0 for every measured message.
//!
//! A connection is an `AsyncClient` plus a task polling its event loop; received publishes
//! go to the connection's one subscription through a channel, acknowledgements to another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use parking_lot::Mutex;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::{AbortOnDrop, Adapter, Caller, Filter, Msg, Pending, Publisher, Subscription};

/// Requests go here, replies come back on `RESPONSE_TOPIC` (MQTT 3.1.1 has no reply-to).
pub(crate) const REQUEST_TOPIC: &str = "bench/req";
/// See `REQUEST_TOPIC`.
pub(crate) const RESPONSE_TOPIC: &str = "bench/resp";
/// A QoS 1 publish here proves that mosquitto has processed everything sent before it.
const BARRIER_TOPIC: &str = "bench/barrier";

static CLIENTS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
enum Acked {
    Connected,
    Subscribed,
    Published,
    Failed(String),
}

/// A connected MQTT client.
#[derive(Clone)]
pub(crate) struct Mqtt {
    client: AsyncClient,
    incoming: Arc<Mutex<Option<UnboundedReceiver<rumqttc::Publish>>>>,
    acks: Arc<tokio::sync::Mutex<UnboundedReceiver<Acked>>>,
    _task: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mqtt")
    }
}

impl Mqtt {
    async fn wait_ack(&self, want: fn(&Acked) -> bool) -> Result<()> {
        let mut acks = self.acks.lock().await;
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match acks.recv().await {
                    Some(Acked::Failed(e)) => bail!("mqtt connection failed: {e}"),
                    Some(a) if want(&a) => return Ok(()),
                    Some(_) => {}
                    None => bail!("mqtt connection closed"),
                }
            }
        })
        .await
        .context("mqtt acknowledgement timed out")?
    }

    async fn subscribe_topic(&self, topic: &str) -> Result<()> {
        self.client.subscribe(topic, QoS::AtMostOnce).await?;
        self.wait_ack(|a| matches!(a, Acked::Subscribed)).await
    }

    fn take_incoming(&self) -> Result<UnboundedReceiver<rumqttc::Publish>> {
        self.incoming
            .lock()
            .take()
            .context("this MQTT connection already has a reading subscription")
    }
}

/// Publishes QoS 0.
#[derive(Debug)]
pub(crate) struct MqttPub(Mqtt);

/// The connection's subscription.
#[derive(Debug)]
pub(crate) struct MqttSub {
    rx: UnboundedReceiver<rumqttc::Publish>,
    with_subjects: bool,
    _conn: Mqtt,
}

/// Request/reply over two topics, correlated by the payload's sequence number.
#[derive(Debug, Clone)]
pub(crate) struct MqttCaller {
    conn: Mqtt,
    pending: Pending,
    _dispatch: Arc<AbortOnDrop>,
}

impl Adapter for Mqtt {
    type Pub = MqttPub;
    type Sub = MqttSub;
    type Caller = MqttCaller;
    type Guard = (Self, Option<AbortOnDrop>);

    async fn connect(addr: &str) -> Result<Self> {
        let (host, port) = addr.rsplit_once(':').context("HOST:PORT")?;
        let id = format!(
            "nb-{}-{}",
            std::process::id(),
            CLIENTS.fetch_add(1, Ordering::Relaxed)
        );
        let mut options = MqttOptions::new(id, host, port.parse()?);
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(true)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(options, 10_000);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        // rumqttc fails the connection when one socket flush takes longer than this (default
        // 5 s), which a publisher outrunning mosquitto's fan-out to 16 subscribers hits.
        network.set_connection_timeout(120);
        // Bound what a fast publisher can queue in its socket ahead of mosquitto (autotuned
        // loopback buffers hold hundreds of thousands of small publishes, which mosquitto
        // then needs tens of seconds to work through before the flush barrier returns).
        network.set_tcp_send_buffer_size(256 * 1024);
        events.set_network_options(network);
        let (pub_tx, pub_rx) = unbounded_channel();
        let (ack_tx, ack_rx) = unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let ack = match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = pub_tx.send(p);
                        continue;
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Acked::Connected,
                    Ok(Event::Incoming(Packet::SubAck(_))) => Acked::Subscribed,
                    Ok(Event::Incoming(Packet::PubAck(_))) => Acked::Published,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = ack_tx.send(Acked::Failed(e.to_string()));
                        return;
                    }
                };
                let _ = ack_tx.send(ack);
            }
        });
        let conn = Self {
            client,
            incoming: Arc::new(Mutex::new(Some(pub_rx))),
            acks: Arc::new(tokio::sync::Mutex::new(ack_rx)),
            _task: Arc::new(AbortOnDrop(task)),
        };
        conn.wait_ack(|a| matches!(a, Acked::Connected)).await?;
        Ok(conn)
    }

    async fn publisher(&self) -> Result<MqttPub> {
        Ok(MqttPub(self.clone()))
    }

    async fn subscribe(&self, filter: Filter<'_>, with_subjects: bool) -> Result<MqttSub> {
        let rx = self.take_incoming()?;
        let topic = match filter {
            Filter::Exact(s) => s,
            Filter::All => "#",
        };
        self.subscribe_topic(topic).await?;
        Ok(MqttSub {
            rx,
            with_subjects,
            _conn: self.clone(),
        })
    }

    async fn snapshot(&self) -> Result<MqttSub> {
        self.subscribe(Filter::All, true).await
    }

    async fn serve_echo(&self) -> Result<Self::Guard> {
        let mut rx = self.take_incoming()?;
        self.subscribe_topic(REQUEST_TOPIC).await?;
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                let _ = client
                    .publish_bytes(RESPONSE_TOPIC, QoS::AtMostOnce, false, p.payload)
                    .await;
            }
        });
        Ok((self.clone(), Some(AbortOnDrop(task))))
    }

    async fn caller(&self) -> Result<MqttCaller> {
        let mut rx = self.take_incoming()?;
        self.subscribe_topic(RESPONSE_TOPIC).await?;
        let pending = Pending::default();
        let replies = pending.clone();
        let dispatch = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                replies.complete(p.payload);
            }
        });
        Ok(MqttCaller {
            conn: self.clone(),
            pending,
            _dispatch: Arc::new(AbortOnDrop(dispatch)),
        })
    }

    async fn hold(&self, subjects: Vec<String>) -> Result<Self::Guard> {
        let mut guard = (self.clone(), None);
        self.hold_more(&mut guard, subjects).await?;
        Ok(guard)
    }

    async fn hold_more(&self, _guard: &mut Self::Guard, subjects: Vec<String>) -> Result<()> {
        if subjects.is_empty() {
            return Ok(());
        }
        let filters = subjects
            .into_iter()
            .map(|path| rumqttc::SubscribeFilter::new(path, QoS::AtMostOnce));
        self.client.subscribe_many(filters).await?;
        self.wait_ack(|a| matches!(a, Acked::Subscribed)).await
    }
}

impl Publisher for MqttPub {
    async fn publish(&mut self, subject: &str, payload: Bytes) -> Result<()> {
        self.0
            .client
            .publish_bytes(subject, QoS::AtMostOnce, false, payload)
            .await?;
        Ok(())
    }

    async fn store(&mut self, subject: &str, payload: Bytes) -> Result<()> {
        self.0
            .client
            .publish_bytes(subject, QoS::AtMostOnce, true, payload)
            .await?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        self.0
            .client
            .publish_bytes(BARRIER_TOPIC, QoS::AtLeastOnce, false, Bytes::new())
            .await?;
        self.0.wait_ack(|a| matches!(a, Acked::Published)).await
    }
}

impl Subscription for MqttSub {
    async fn next(&mut self) -> Result<Option<Msg>> {
        Ok(self.rx.recv().await.map(|p| Msg {
            subject: self.with_subjects.then_some(p.topic),
            header: crate::payload::parse(&p.payload),
        }))
    }
}

impl Caller for MqttCaller {
    async fn call(&self, payload: Bytes) -> Result<Bytes> {
        let rx = self.pending.register(&payload)?;
        self.conn
            .client
            .publish_bytes(REQUEST_TOPIC, QoS::AtMostOnce, false, payload)
            .await?;
        Pending::wait(rx).await
    }
}
