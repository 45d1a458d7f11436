//! `netsvc passwd`: the argon2 hash of a password, for a users file.

use std::io::BufRead as _;

use anyhow::{Context as _, bail};

use crate::exit;

/// Reads one line from stdin (the password, without its line end) and prints its hash.
pub(crate) fn run() -> anyhow::Result<u8> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on stdin: type it and press Enter, or pipe it in");
    }
    let hash = netsvc::security::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(exit::OK)
}
