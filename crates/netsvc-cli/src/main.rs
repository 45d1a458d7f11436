//! `netsvc`: run an exchange hub and poke at a live netsvc system from a shell.
//!
//! A thin layer over the `netsvc` library: every command parses its input up front (so bad
//! input fails before anything is started), then does its work through the library's public
//! API. Errors become one `error: ...` line on stderr and an exit code (see [`exit`]); no
//! command panics on user input.

mod cli;
mod client;
mod cmd;
mod config;
mod logging;
mod output;
mod parse;
mod security;
mod signals;

use std::io::Write as _;

use clap::Parser as _;

/// The exit codes, as documented in `docs/CLI.md`.
pub(crate) mod exit {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// The command ran but what it was asked to do failed: a call's failure, a line that
    /// could not be published.
    pub(crate) const FAILURE: u8 = 1;
    /// Bad usage, bad input, bad configuration, or the exchange could not be reached or
    /// served.
    pub(crate) const USAGE: u8 = 2;
    /// Stopped by SIGINT before it had finished on its own.
    pub(crate) const INTERRUPTED: u8 = 130;
    /// Stopped by SIGTERM before it had finished on its own.
    pub(crate) const TERMINATED: u8 = 143;
}

/// An early end with this exit code and nothing more to say (the reason, if any, has been
/// printed already). Commands return it as an error so that `?` carries it up to `main`.
#[derive(Debug)]
pub(crate) struct Exit(pub(crate) u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn main() {
    let cli = cli::Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    output::set_quiet(cli.quiet > 0);

    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(cli.command)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::USAGE
        }
    };
    let _ = std::io::stdout().flush();
    // Exit without dropping the tokio runtime: a thread blocked reading stdin (publish) or a
    // link task still closing must not hold the process up once the command is done.
    std::process::exit(i32::from(code));
}

async fn run(command: cli::Command) -> u8 {
    let mut signals = match signals::Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return exit::USAGE;
        }
    };
    let result = match command {
        cli::Command::Exchange(args) => cmd::exchange::run(args, &mut signals).await,
        cli::Command::Services(args) => cmd::services::run(args, &mut signals).await,
        cli::Command::Call(args) => cmd::call::run(args, &mut signals).await,
        cli::Command::Info(args) => cmd::info::run(args, &mut signals).await,
        cli::Command::Methods(args) => cmd::info::methods(args, &mut signals).await,
        cli::Command::Publish(args) => cmd::publish::run(args, &mut signals).await,
        cli::Command::Monitor(args) => cmd::monitor::run(args, &mut signals).await,
        cli::Command::Serve(args) => cmd::serve::run(args, &mut signals).await,
        cli::Command::Demo(args) => cmd::demo::run(args, &mut signals).await,
        cli::Command::Gateway(args) => cmd::gateway::run(args, &mut signals).await,
        cli::Command::Passwd => cmd::passwd::run(&mut signals).await,
        cli::Command::Cert(args) => cmd::cert::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                return *code;
            }
            if e.downcast_ref::<output::StdoutClosed>().is_some() {
                // `netsvc monitor clock | head -1`: the reader has all it wanted.
                return exit::OK;
            }
            eprintln!("error: {}", one_line(&e));
            exit::USAGE
        }
    }
}

/// The error and its causes on one line, `a: b: c`, leaving out a cause whose text the
/// line already ends with (library errors often include their source in their own text).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}
