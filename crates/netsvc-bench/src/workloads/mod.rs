//! The workloads of anchors.md section 5.3. Each module has the orchestrator's side (start
//! the hub and the role processes, collect their results) and the roles' side (the code
//! that runs inside the spawned processes, generic over the adapter).

pub(crate) mod gateway;
pub(crate) mod memory;
pub(crate) mod ose;
pub(crate) mod w1;
pub(crate) mod w2;
pub(crate) mod w4;
pub(crate) mod w5;
pub(crate) mod xhub;

use clap::Args;

use crate::adapters::System;
use crate::adapters::netsvc::RegistryMode;
use crate::harness::Env;
use crate::proc::{Cpu, Proc};

/// Where a role connects.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    /// The system.
    #[arg(long, value_enum)]
    pub(crate) system: System,
    /// The hub's `HOST:PORT`.
    #[arg(long)]
    pub(crate) addr: String,
    /// netsvc clients: which services the hub tells them of.
    #[arg(long, value_enum, default_value_t = RegistryMode::Whole)]
    pub(crate) registry: RegistryMode,
}

impl Target {
    /// The arguments that give this target to a role whose netsvc clients use `registry`.
    pub(crate) fn args_with(system: System, addr: &str, registry: RegistryMode) -> Vec<String> {
        let mut args = Self::args(system, addr);
        args.extend(["--registry".to_owned(), registry.name().to_owned()]);
        args
    }

    /// The arguments that give this target to a role.
    pub(crate) fn args(system: System, addr: &str) -> Vec<String> {
        vec![
            "--system".to_owned(),
            system.name().to_owned(),
            "--addr".to_owned(),
            addr.to_owned(),
        ]
    }
}

/// Runs `$f::<Adapter>($args...)` with the adapter type of `$system`.
macro_rules! dispatch {
    ($system:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $system {
            $crate::adapters::System::Netsvc => $f::<$crate::adapters::netsvc::Netsvc>($($arg),*).await,
            $crate::adapters::System::Nats => $f::<$crate::adapters::nats::Nats>($($arg),*).await,
            $crate::adapters::System::Mqtt => $f::<$crate::adapters::mqtt::Mqtt>($($arg),*).await,
            $crate::adapters::System::Tcp => $f::<$crate::adapters::tcp::Tcp<false>>($($arg),*).await,
            $crate::adapters::System::TcpDirect => $f::<$crate::adapters::tcp::Tcp<true>>($($arg),*).await,
        }
    };
}
pub(crate) use dispatch;

/// A case's outcome: its figures, or why it has none.
pub(crate) fn record<T>(
    what: &str,
    outcome: anyhow::Result<T>,
    notes: &mut Vec<String>,
) -> Option<T> {
    match outcome {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("!! {what} failed: {e:#}");
            notes.push(format!("{what} failed: {e:#}"));
            None
        }
    }
}

/// Splits `total` clients into contiguous batches, one per client process (at most
/// `processes`): `(first, count)` pairs, empty batches left out.
fn client_batches(total: usize, processes: usize) -> Vec<(usize, usize)> {
    let per = total.div_ceil(processes.max(1));
    (0..processes)
        .map(|i| (i * per, per.min(total.saturating_sub(i * per))))
        .filter(|&(_, count)| count > 0)
        .collect()
}

/// Starts `total` clients of `role` on the load CPU, spread over at most `processes`
/// processes (each told its batch with `--first` and `--count`).
pub(crate) fn spawn_clients(
    env: &Env,
    system: System,
    role: &str,
    target: &[String],
    total: usize,
    processes: usize,
) -> anyhow::Result<Vec<Proc>> {
    client_batches(total, processes)
        .into_iter()
        .enumerate()
        .map(|(i, (first, count))| {
            let mut args = vec![role.to_owned()];
            args.extend(target.iter().cloned());
            args.extend([
                "--count".to_owned(),
                count.to_string(),
                "--first".to_owned(),
                first.to_string(),
            ]);
            env.role(Cpu::Load, &format!("{system}-{role}{i}"), &args)
        })
        .collect()
}
