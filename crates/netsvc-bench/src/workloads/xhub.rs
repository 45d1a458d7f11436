//! Across hubs (issue 27): W2 with its caller on one hub and its echo service on another,
//! the two joined three ways, in one run: netsvc hubs linked by netsvc's own TCP link
//! (`--connect`), netsvc hubs joined through a two-node NATS cluster (`--nats`, one hub per
//! node, no TCP link between them), and plain NATS clients of the same two-node cluster
//! (a request routed from one node to the other). The single-hub W2 of the same run is the
//! reference.
//!
//! Layout: the hubs and the NATS nodes on CPU 0, the service and caller processes on CPU 1,
//! as in W2. The NATS nodes run `bench/nats.conf` with the cluster's flags.

use std::time::Duration;

use anyhow::Result;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::w2;
use crate::adapters::System;
use crate::harness::Env;

/// How the two hubs are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub(crate) enum Layout {
    /// netsvc hubs, one linked to the other over TCP.
    TcpLinked,
    /// netsvc hubs, each on its own node of a NATS cluster.
    NatsLinked,
    /// Plain NATS clients, one on each node of the cluster.
    NatsCluster,
}

impl Layout {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::TcpLinked => "netsvc, hubs linked over TCP",
            Self::NatsLinked => "netsvc, hubs joined through a NATS cluster",
            Self::NatsCluster => "nats-server, clients on two nodes of a cluster",
        }
    }
}

/// One layout's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) layout: Layout,
    pub(crate) w2: w2::Run,
}

/// How long the service's presence gets to reach the other node or hub before the caller
/// starts (the netsvc caller also waits for the service to be visible).
const SETTLE: Duration = Duration::from_millis(500);

/// Runs W2 across two hubs joined as `layout` says.
pub(crate) async fn run(env: &Env, layout: Layout) -> Result<Run> {
    let mut nodes = match layout {
        Layout::TcpLinked => Vec::new(),
        Layout::NatsLinked | Layout::NatsCluster => env.start_nats_cluster(2).await?,
    };
    let mut hubs = Vec::new();
    let result = async {
        let (system, service_addr, caller_addr) = match layout {
            Layout::TcpLinked => {
                hubs.push(env.start_netsvc_hub_with(&[]).await?);
                let connect = ["--connect".to_owned(), hubs[0].addr.clone()];
                hubs.push(env.start_netsvc_hub_with(&connect).await?);
                (System::Netsvc, hubs[0].addr.clone(), hubs[1].addr.clone())
            }
            Layout::NatsLinked => {
                for node in &nodes {
                    let nats = ["--nats".to_owned(), format!("nats://{}", node.addr)];
                    hubs.push(env.start_netsvc_hub_with(&nats).await?);
                }
                (System::Netsvc, hubs[0].addr.clone(), hubs[1].addr.clone())
            }
            Layout::NatsCluster => (System::Nats, nodes[0].addr.clone(), nodes[1].addr.clone()),
        };
        w2::measure(env, system, &service_addr, &caller_addr, SETTLE).await
    }
    .await;
    for hub in hubs.iter_mut().chain(nodes.iter_mut()) {
        hub.stop().await;
    }
    Ok(Run {
        layout,
        w2: result?,
    })
}
