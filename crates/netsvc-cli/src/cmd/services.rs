//! `netsvc services`: the services visible through an exchange, once or as they change.
//!
//! This command creates no service of its own (a plain runtime and a client exchange are
//! enough to see the registry), so the list holds exactly what the exchange propagates.

use std::collections::HashMap;

use anyhow::Context as _;
use netsvc::{AnnouncementKind, RecvError, RegistryWatch, names};

use crate::cli::ServicesArgs;
use crate::client::{self, Connection, Target};
use crate::exit;
use crate::output::{self, SERVICE_COLUMNS, ServiceLine, status};
use crate::parse::Wait;
use crate::signals::Signals;

pub(crate) async fn run(args: ServicesArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    if let Some(name) = &args.name {
        names::check_service_name(name)
            .with_context(|| format!("invalid service name {name:?}"))?;
    }
    // A watch runs until stopped, so it waits for the hub as long as it takes.
    let default_wait = if args.watch {
        Wait(None)
    } else {
        super::call::DEFAULT_WAIT
    };
    let conn = client::connect(Target::of(&args.connect, default_wait), signals).await?;
    let result = if args.watch {
        watch(&conn, &args, signals).await
    } else {
        list(&conn, &args)
    };
    conn.close().await;
    result
}

/// Whether the user asked to see this service.
fn wanted(args: &ServicesArgs, line: &ServiceLine) -> bool {
    match &args.name {
        Some(name) => &line.name == name,
        None => args.all || listed_by_default(&line.name),
    }
}

/// Anonymous services and netsvc's own (`netsvc.exchange`) are listed only with `--all`.
fn listed_by_default(name: &str) -> bool {
    !name.is_empty() && !name.starts_with("netsvc.")
}

fn sorted(mut lines: Vec<ServiceLine>) -> Vec<ServiceLine> {
    lines.sort_by(|a, b| (&a.name, &a.address).cmp(&(&b.name, &b.address)));
    lines
}

fn list(conn: &Connection, args: &ServicesArgs) -> anyhow::Result<u8> {
    let registry = conn.rt.registry();
    let all: Vec<ServiceLine> = registry
        .services()
        .iter()
        .map(|b| ServiceLine::new(b, registry.groups_of(b.address())))
        .collect();
    let visible = all
        .iter()
        .filter(|l| args.all || listed_by_default(&l.name))
        .count();
    let lines = sorted(all.into_iter().filter(|l| wanted(args, l)).collect());
    if lines.is_empty() {
        match &args.name {
            Some(name) if visible > 0 => status(format_args!(
                "no service named {name:?} through {} ({visible} other{} visible)",
                conn.address(),
                if visible == 1 { "" } else { "s" }
            )),
            _ => status(format_args!(
                "no services visible through {}",
                conn.address()
            )),
        }
        return Ok(exit::OK);
    }
    if args.json {
        for line in &lines {
            output::json_line(line)?;
        }
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = lines.iter().map(ServiceLine::cells).collect();
    let widths = output::widths(&SERVICE_COLUMNS, &rows);
    let header: Vec<String> = SERVICE_COLUMNS.iter().map(|s| (*s).to_owned()).collect();
    output::line(&output::aligned(&header, &widths))?;
    for row in &rows {
        output::line(&output::aligned(row, &widths))?;
    }
    Ok(exit::OK)
}

/// The human columns of `--watch`: the event, the service's columns, then the event's
/// detail (group or reason).
struct WatchTable {
    widths: Vec<usize>,
}

impl WatchTable {
    const EVENT_WIDTH: usize = "group-joined".len();

    fn new(snapshot: &[ServiceLine]) -> Self {
        let rows: Vec<Vec<String>> = snapshot.iter().map(ServiceLine::cells).collect();
        // Leave room for names that arrive later; a longer one just shifts its own row.
        let mut widths = output::widths(&SERVICE_COLUMNS, &rows);
        for (w, min) in widths.iter_mut().zip([12, 9, 8, 8, 16, 16, 24]) {
            *w = (*w).max(min);
        }
        widths.insert(0, Self::EVENT_WIDTH);
        Self { widths }
    }

    fn header(&self) -> String {
        let mut cells = vec!["EVENT".to_owned()];
        cells.extend(SERVICE_COLUMNS.iter().map(|s| (*s).to_owned()));
        cells.push("DETAIL".to_owned());
        output::aligned(&cells, &self.widths)
    }

    fn row(&self, line: &ServiceLine) -> String {
        let mut cells = vec![line.event.unwrap_or("").to_owned()];
        cells.extend(line.cells());
        let detail = line.group.clone().or(line.reason.map(str::to_owned));
        cells.push(detail.unwrap_or_default());
        output::aligned(&cells, &self.widths).trim_end().to_owned()
    }
}

async fn watch(
    conn: &Connection,
    args: &ServicesArgs,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let registry = conn.rt.registry();
    let _reporter = client::report_link_changes(conn);
    loop {
        let mut announcements = registry.watch();
        // The groups printed so far for each service, so that every line shows the groups
        // as the stream has told them.
        let mut printed: HashMap<String, Vec<String>> = HashMap::new();
        let snapshot = snapshot(&mut announcements)?;
        for line in &snapshot {
            printed.insert(line.address.clone(), line.groups.clone());
        }
        let snapshot: Vec<ServiceLine> = snapshot.into_iter().filter(|l| wanted(args, l)).collect();
        let table = WatchTable::new(&snapshot);
        if !args.json {
            output::line(&table.header())?;
        }
        for line in &snapshot {
            emit(args, &table, line)?;
        }
        loop {
            let next = tokio::select! {
                a = announcements.recv() => a,
                _ = signals.recv() => return Ok(exit::OK),
            };
            let announcement = match next {
                Ok(a) => a,
                Err(RecvError::Lagged) => {
                    status("fell behind the registry; starting again from a fresh snapshot");
                    break;
                }
                Err(RecvError::Closed) => anyhow::bail!("the registry watch ended"),
            };
            let mut line = ServiceLine::new(&announcement.binding, Vec::new());
            match &announcement.kind {
                AnnouncementKind::Available => {
                    // A new service is printed with the groups it arrived with. Their joins
                    // are announced separately, maybe not yet queued: take them from the
                    // registry now and skip those announcements when they come.
                    line.event = Some("available");
                    line.groups = registry.groups_of(&line.address);
                    printed.insert(line.address.clone(), line.groups.clone());
                }
                AnnouncementKind::Withdrawn(reason) => {
                    line.event = Some("withdrawn");
                    line.reason = Some(reason.name());
                    printed.remove(&line.address);
                }
                AnnouncementKind::GroupJoined(g) => {
                    let groups = printed.entry(line.address.clone()).or_default();
                    if groups.iter().any(|x| **x == **g) {
                        continue;
                    }
                    groups.push(g.to_string());
                    line.event = Some("group-joined");
                    line.groups = groups.clone();
                    line.group = Some(g.to_string());
                }
                AnnouncementKind::GroupLeft(g) => {
                    let groups = printed.entry(line.address.clone()).or_default();
                    groups.retain(|x| **x != **g);
                    line.event = Some("group-left");
                    line.groups = groups.clone();
                    line.group = Some(g.to_string());
                }
                _ => continue,
            }
            if wanted(args, &line) {
                emit(args, &table, &line)?;
            }
        }
    }
}

/// The current set, from the announcements a new watch starts with (queued as the watch is
/// made; anything after them that is already queued is folded in too).
fn snapshot(announcements: &mut RegistryWatch) -> anyhow::Result<Vec<ServiceLine>> {
    let mut lines: Vec<ServiceLine> = Vec::new();
    while let Some(a) = announcements.try_recv()? {
        let address = a.binding.address();
        match &a.kind {
            AnnouncementKind::Available => {
                let mut line = ServiceLine::new(&a.binding, Vec::new());
                line.event = Some("present");
                lines.push(line);
            }
            AnnouncementKind::Withdrawn(_) => lines.retain(|l| l.address != address),
            AnnouncementKind::GroupJoined(g) => {
                if let Some(line) = lines.iter_mut().find(|l| l.address == address)
                    && !line.groups.iter().any(|x| **x == **g)
                {
                    line.groups.push(g.to_string());
                }
            }
            AnnouncementKind::GroupLeft(g) => {
                if let Some(line) = lines.iter_mut().find(|l| l.address == address) {
                    line.groups.retain(|x| **x != **g);
                }
            }
            _ => {}
        }
    }
    Ok(sorted(lines))
}

fn emit(args: &ServicesArgs, table: &WatchTable, line: &ServiceLine) -> anyhow::Result<()> {
    if args.json {
        output::json_line(line)
    } else {
        output::line(&table.row(line))
    }
}
