//! Logs on stderr through `tracing`.
//!
//! The level is `warn` by default. `-v`/`-q` set it when given (they are what the user just
//! typed, so they beat an exported `RUST_LOG`); otherwise `RUST_LOG` applies, with its full
//! per-module syntax.

use tracing_subscriber::EnvFilter;

pub(crate) fn init(verbose: u8, quiet: u8) {
    let level = match i16::from(verbose) - i16::from(quiet) {
        ..=-2 => "off",
        -1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let mut bad_env = None;
    let filter = if verbose > 0 || quiet > 0 {
        EnvFilter::new(level)
    } else {
        match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
                bad_env = Some(format!("ignoring RUST_LOG={spec:?}: {e}"));
                EnvFilter::new(level)
            }),
            _ => EnvFilter::new(level),
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(warning) = bad_env {
        tracing::warn!("{warning}");
    }
}
