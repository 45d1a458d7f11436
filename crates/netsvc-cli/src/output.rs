//! What commands print: JSON lines and aligned columns on stdout, status lines on stderr.
//!
//! Every JSON line is one compact object followed by a newline and flushed at once, so that
//! a script reading a pipe sees each event as it happens. Field order is fixed by the
//! structs that are serialised (serde keeps declaration order).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use netsvc::{Binding, Location};
use serde::Serialize;

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q`: no status lines.
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Prints a status line on stderr: what a long-running command is doing, for the person
/// watching it. Not a log record (no timestamp or level), so tests and scripts can rely on
/// its wording; `-q` silences it.
pub(crate) fn status(line: impl std::fmt::Display) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("{line}");
    }
}

/// Stdout was closed by its reader (`| head -1`): the command ends quietly, exit code 0.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes one line on stdout and flushes it.
pub(crate) fn line(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// Writes one object as a JSON line on stdout.
pub(crate) fn json_line(object: &impl Serialize) -> anyhow::Result<()> {
    line(&serde_json::to_string(object)?)
}

/// One service, as `services` prints it (and `services --watch`, with `event` and the
/// event's details).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<&'static str>,
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) audience: String,
    pub(crate) groups: Vec<String>,
    pub(crate) location: &'static str,
    pub(crate) agent: String,
    pub(crate) process: String,
    /// For group-joined and group-left: the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    /// For withdrawn: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'static str>,
}

impl ServiceLine {
    pub(crate) fn new(binding: &Binding, groups: Vec<String>) -> Self {
        Self {
            event: None,
            name: binding.service_name().to_owned(),
            address: binding.address().to_owned(),
            audience: binding.audience().as_str().to_owned(),
            groups,
            location: match binding.location() {
                Location::Local => "local",
                Location::Remote => "remote",
            },
            agent: binding.agent_identity().to_owned(),
            process: binding.process_identity().to_owned(),
            group: None,
            reason: None,
        }
    }

    /// The cells of the human table, in [`SERVICE_COLUMNS`] order.
    pub(crate) fn cells(&self) -> Vec<String> {
        let name = if self.name.is_empty() {
            "(anonymous)".to_owned()
        } else {
            self.name.clone()
        };
        let audience = match self.audience.as_str() {
            "" => "(process)".to_owned(),
            a => a.to_owned(),
        };
        let groups = if self.groups.is_empty() {
            "-".to_owned()
        } else {
            self.groups.join(",")
        };
        vec![
            name,
            audience,
            groups,
            self.location.to_owned(),
            self.agent.clone(),
            self.process.clone(),
            self.address.clone(),
        ]
    }
}

/// The columns of the human service table.
pub(crate) const SERVICE_COLUMNS: [&str; 7] = [
    "NAME", "AUDIENCE", "GROUPS", "LOCATION", "AGENT", "PROCESS", "ADDRESS",
];

/// Column widths that fit `header` and every row, for [`aligned`].
pub(crate) fn widths(header: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// One row of aligned columns: two spaces between columns, no trailing spaces.
pub(crate) fn aligned(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    let last = cells.len().saturating_sub(1);
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(cell);
        if i < last {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count()) + 2;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["a".to_owned(), "bb".to_owned(), "c".to_owned()],
            vec!["dddd".to_owned(), "e".to_owned(), "f".to_owned()],
        ];
        let w = widths(&["X", "Y", "Z"], &rows);
        assert_eq!(w, vec![4, 2, 1]);
        assert_eq!(aligned(&rows[0], &w), "a     bb  c");
        assert_eq!(aligned(&rows[1], &w), "dddd  e   f");
    }
}
