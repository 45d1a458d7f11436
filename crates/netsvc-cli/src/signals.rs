//! SIGINT and SIGTERM, installed once at start-up.
//!
//! Installing the handlers replaces the default "terminate at once" behaviour for the whole
//! process, so every command must listen: long-running ones (exchange, demo, monitor,
//! `services --watch`, publish) take a signal as their normal end and shut down
//! gracefully; the others stop with exit code 130 or 143.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::exit;

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    /// The signal's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }

    /// The exit code of a command stopped before it had finished on its own.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => exit::INTERRUPTED,
            Self::Terminate => exit::TERMINATED,
        }
    }
}

/// The process's stop signals.
#[derive(Debug)]
pub(crate) struct Signals {
    interrupt: Signal,
    terminate: Signal,
    /// Installed only by the command that reloads on it (the default ends the process).
    hangup: Option<Signal>,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: None,
        })
    }

    /// Waits for the next stop signal.
    pub(crate) async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
        }
    }

    /// Takes SIGHUP from now on (instead of ending the process), for [`hangup`](Self::hangup).
    pub(crate) fn install_hangup(&mut self) -> std::io::Result<()> {
        self.hangup = Some(signal(SignalKind::hangup())?);
        Ok(())
    }

    /// Waits for the next stop signal (`Some`) or SIGHUP (`None`; only once
    /// [`install_hangup`](Self::install_hangup) was called).
    pub(crate) async fn recv_or_hangup(&mut self) -> Option<Stop> {
        let hangup = async {
            match &mut self.hangup {
                Some(hangup) => {
                    hangup.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => Some(Stop::Interrupt),
            _ = self.terminate.recv() => Some(Stop::Terminate),
            () = hangup => None,
        }
    }
}
