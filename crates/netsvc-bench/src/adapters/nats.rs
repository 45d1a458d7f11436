//! NATS: nats-server with the `async-nats` client. Core pub/sub and request/reply; the
//! cached values of W4 live in a JetStream key-value bucket (needs `nats-server -js`).

use std::collections::VecDeque;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, context::PublishAckFuture, kv};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{AbortOnDrop, Adapter, Caller, Filter, Msg, Publisher, SUBJECT, Subscription};

/// The KV bucket of W4.
pub(crate) const BUCKET: &str = "bench";

/// JetStream publishes awaiting their acknowledgement at once while loading the bucket.
const ACK_WINDOW: usize = 1024;

/// Connection options shared by every NATS client of the run: a deep subscription queue so
/// the client library does not drop messages of a fast publisher on its own.
pub(crate) fn options() -> async_nats::ConnectOptions {
    let options = async_nats::ConnectOptions::new().subscription_capacity(1 << 20);
    match super::tls_dir() {
        Some(dir) => options
            .add_root_certificates(dir.join("ca.pem"))
            .require_tls(true),
        None => options,
    }
}

/// A connected NATS client.
#[derive(Debug, Clone)]
pub(crate) struct Nats {
    client: async_nats::Client,
}

/// Publishes on core subjects, or into the KV bucket.
#[derive(Debug)]
pub(crate) struct NatsPub {
    client: async_nats::Client,
    kv: Option<jetstream::Context>,
    acks: VecDeque<PublishAckFuture>,
}

/// A core subscription or a KV watch.
pub(crate) enum NatsSub {
    /// Core NATS.
    Core(async_nats::Subscriber, bool),
    /// A KV watch over the bucket.
    Kv(Box<kv::Watch>),
}

/// Calls with `request`.
#[derive(Debug, Clone)]
pub(crate) struct NatsCaller(async_nats::Client);

/// Keeps a responder or subscriptions alive.
#[derive(Debug)]
pub(crate) struct NatsGuard {
    /// The echo responder's task.
    _task: Option<AbortOnDrop>,
    /// Held subscriptions.
    subs: Vec<async_nats::Subscriber>,
}

impl Adapter for Nats {
    type Pub = NatsPub;
    type Sub = NatsSub;
    type Caller = NatsCaller;
    type Guard = NatsGuard;

    async fn connect(addr: &str) -> Result<Self> {
        let client = options().connect(addr).await?;
        Ok(Self { client })
    }

    async fn publisher(&self) -> Result<NatsPub> {
        Ok(NatsPub {
            client: self.client.clone(),
            kv: None,
            acks: VecDeque::new(),
        })
    }

    async fn subscribe(&self, filter: Filter<'_>, with_subjects: bool) -> Result<NatsSub> {
        let subject = match filter {
            Filter::Exact(s) => s.to_owned(),
            Filter::All => ">".to_owned(),
        };
        let sub = self.client.subscribe(subject).await?;
        // The server has the subscription once it answered the PING after it.
        self.client.flush().await?;
        Ok(NatsSub::Core(sub, with_subjects))
    }

    async fn snapshot(&self) -> Result<NatsSub> {
        let js = jetstream::new(self.client.clone());
        let store = js.get_key_value(BUCKET).await?;
        // `watch_all` delivers only new updates (DeliverPolicy::New); the last value of
        // every key first is `watch_with_history` (LastPerSubject), like Go's `WatchAll`.
        let watch = store.watch_with_history(">").await?;
        Ok(NatsSub::Kv(Box::new(watch)))
    }

    async fn serve_echo(&self) -> Result<NatsGuard> {
        let mut sub = self.client.subscribe(SUBJECT).await?;
        self.client.flush().await?;
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(reply) = m.reply {
                    let _ = client.publish(reply, m.payload).await;
                }
            }
        });
        Ok(NatsGuard {
            _task: Some(AbortOnDrop(task)),
            subs: Vec::new(),
        })
    }

    async fn caller(&self) -> Result<NatsCaller> {
        Ok(NatsCaller(self.client.clone()))
    }

    async fn hold(&self, subjects: Vec<String>) -> Result<NatsGuard> {
        let mut subs = Vec::with_capacity(subjects.len());
        for s in subjects {
            subs.push(self.client.subscribe(s).await?);
        }
        self.client.flush().await?;
        Ok(NatsGuard { _task: None, subs })
    }

    async fn hold_more(&self, guard: &mut NatsGuard, subjects: Vec<String>) -> Result<()> {
        for s in subjects {
            guard.subs.push(self.client.subscribe(s).await?);
        }
        self.client.flush().await?;
        Ok(())
    }
}

impl NatsPub {
    async fn bucket(&mut self) -> Result<&jetstream::Context> {
        if self.kv.is_none() {
            let js = jetstream::new(self.client.clone());
            let _ = js.delete_stream(format!("KV_{BUCKET}")).await;
            // `create_key_value` first asks for the account info, and async-nats 0.51 cannot
            // parse nats-server 2.9.10's answer; so create the bucket's stream by hand,
            // exactly as `create_key_value` would (history 1), and open it as a bucket.
            js.create_stream(jetstream::stream::Config {
                name: format!("KV_{BUCKET}"),
                subjects: vec![format!("$KV.{BUCKET}.>")],
                max_messages_per_subject: 1,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating the KV bucket's stream: {e:?}"))?;
            self.kv = Some(js);
        }
        self.kv.as_ref().context("bucket")
    }
}

impl std::fmt::Debug for NatsSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Core(..) => "NatsSub::Core",
            Self::Kv(_) => "NatsSub::Kv",
        })
    }
}

impl Publisher for NatsPub {
    async fn publish(&mut self, subject: &str, payload: Bytes) -> Result<()> {
        self.client.publish(subject.to_owned(), payload).await?;
        Ok(())
    }

    async fn store(&mut self, subject: &str, payload: Bytes) -> Result<()> {
        // A KV put is a JetStream publish on $KV.<bucket>.<key>; keep a window of them in
        // flight instead of waiting for each acknowledgement in turn.
        let js = self.bucket().await?.clone();
        let ack = js
            .publish(format!("$KV.{BUCKET}.{subject}"), payload)
            .await?;
        self.acks.push_back(ack);
        if self.acks.len() >= ACK_WINDOW
            && let Some(oldest) = self.acks.pop_front()
        {
            oldest.await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        while let Some(ack) = self.acks.pop_front() {
            ack.await?;
        }
        self.client.flush().await?;
        Ok(())
    }
}

impl Subscription for NatsSub {
    async fn next(&mut self) -> Result<Option<Msg>> {
        match self {
            Self::Core(sub, with_subjects) => Ok(sub.next().await.map(|m| Msg {
                subject: with_subjects.then(|| m.subject.to_string()),
                header: crate::payload::parse(&m.payload),
            })),
            Self::Kv(watch) => match watch.next().await {
                Some(entry) => {
                    let entry = entry?;
                    Ok(Some(Msg {
                        subject: Some(entry.key),
                        header: crate::payload::parse(&entry.value),
                    }))
                }
                None => Ok(None),
            },
        }
    }
}

impl Caller for NatsCaller {
    async fn call(&self, payload: Bytes) -> Result<Bytes> {
        Ok(self.0.request(SUBJECT, payload).await?.payload)
    }
}
