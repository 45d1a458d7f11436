//! `netsvc passwd`: the argon2 hash of a password, for a users file.
//!
//! On a terminal it asks twice, with the echo off, so that the password is neither shown
//! nor mistyped unnoticed; otherwise it reads one line from stdin (a pipe, a file).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use rustix::termios::{self, LocalModes, OptionalActions, Termios};

use crate::exit;
use crate::signals::Signals;

/// Reads the password (see the module's comment) and prints its hash.
pub(crate) async fn run(signals: &mut Signals) -> anyhow::Result<u8> {
    if !std::io::stdin().is_terminal() {
        let line = read_line().context("cannot read the password from stdin")?;
        return print_hash(
            &line,
            "no password on stdin: type it and press Enter, or pipe it in",
        );
    }
    let quiet = Quiet::start().context("cannot turn the terminal's echo off")?;
    // The read blocks its thread; a signal meanwhile ends the command (the terminal's echo
    // comes back when `quiet` is dropped), the read being left behind.
    let typed = tokio::task::spawn_blocking(ask_twice);
    let answer = tokio::select! {
        answer = typed => answer.context("reading the password")?,
        stop = signals.recv() => {
            drop(quiet);
            eprintln!();
            return Ok(stop.exit_code());
        }
    };
    drop(quiet);
    let password = answer?;
    print_hash(&password, "no password: type one and press Enter")
}

/// Asks for the password and again, on stderr; the two must agree.
fn ask_twice() -> anyhow::Result<String> {
    let first = prompt("Password: ")?;
    let second = prompt("Again: ")?;
    if first != second {
        bail!("the two passwords differ; nothing was printed");
    }
    Ok(first)
}

fn prompt(text: &str) -> anyhow::Result<String> {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let line = read_line().context("cannot read the password")?;
    // The Enter typed was not echoed either.
    eprintln!();
    Ok(line)
}

/// One line of stdin without its line end.
fn read_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}

fn print_hash(password: &str, empty: &str) -> anyhow::Result<u8> {
    if password.is_empty() {
        bail!("{empty}");
    }
    let hash = netsvc::security::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(exit::OK)
}

/// The terminal on stdin with its echo off, until dropped.
struct Quiet {
    before: Termios,
}

impl Quiet {
    fn start() -> rustix::io::Result<Self> {
        let stdin = std::io::stdin();
        let before = termios::tcgetattr(&stdin)?;
        let mut quiet = before.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // A line is still a line: ICANON stays, so Enter ends it and erasing works.
        termios::tcsetattr(&stdin, OptionalActions::Flush, &quiet)?;
        Ok(Self { before })
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.before);
    }
}

impl std::fmt::Debug for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quiet").finish_non_exhaustive()
    }
}
