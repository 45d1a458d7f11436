//! The command line: every command, flag and help text. The behaviour lives in `cmd/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use netsvc::Lifetime;

use crate::parse;

/// The port of the original manual, on the loopback interface: a hub is private to the
/// machine unless it is told otherwise.
pub(crate) const DEFAULT_ADDRESS: &str = "127.0.0.1:11111";

const TOP_EXAMPLES: &str = "\
Examples:
  netsvc exchange &                      # a hub on 127.0.0.1:11111
  netsvc demo &                          # example services: echo, clock
  netsvc services                        # what is there
  netsvc call echo echo '\"hi\"'           # call a method; prints \"hi\"
  netsvc monitor clock                   # follow the clock's reports

Exit codes: 0 ok, 1 request failed, 2 usage/connection/config error,
130 interrupted (SIGINT), 143 terminated (SIGTERM). See docs/CLI.md.";

/// Run a netsvc exchange hub and inspect, call, publish to and monitor a live system.
#[derive(Debug, Parser)]
#[command(name = "netsvc", version, after_help = TOP_EXAMPLES, propagate_version = true)]
pub(crate) struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace). Overrides RUST_LOG.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Less output on stderr: no status lines, errors only (-qq: nothing logged).
    /// Overrides RUST_LOG.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an exchange server (a hub) that links processes and relays between them.
    #[command(after_help = EXCHANGE_EXAMPLES)]
    Exchange(ExchangeArgs),
    /// List the services visible through an exchange.
    #[command(after_help = SERVICES_EXAMPLES)]
    Services(ServicesArgs),
    /// Call a method of a service and print its result.
    #[command(after_help = CALL_EXAMPLES)]
    Call(CallArgs),
    /// Publish reports as a service.
    #[command(after_help = PUBLISH_EXAMPLES)]
    Publish(PublishArgs),
    /// Print the reports of every service of a name, one JSON object per line.
    #[command(after_help = MONITOR_EXAMPLES)]
    Monitor(MonitorArgs),
    /// Host example services (echo, clock) so there is something to look at.
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
}

/// How a client command reaches the exchange.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectArgs {
    /// The exchange to connect to: HOST:PORT or unix:PATH.
    #[arg(
        short = 'c',
        long = "connect",
        value_name = "ADDR",
        env = "NETSVC_EXCHANGE",
        default_value = DEFAULT_ADDRESS
    )]
    pub(crate) address: String,
    /// The exchange group to join ("" is the default group). Services whose audience is a
    /// group are only visible through exchanges of that group.
    #[arg(short, long, value_name = "NAME", default_value = "")]
    pub(crate) group: String,
    /// How long to wait for the exchange before giving up, in seconds (at least 0.2).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse::wait_seconds)]
    pub(crate) retry: Duration,
}

const EXCHANGE_EXAMPLES: &str = "\
Examples:
  netsvc exchange                                  # 127.0.0.1:11111, this machine only
  netsvc exchange --listen 0.0.0.0:11111           # open to the network
  netsvc exchange --listen 127.0.0.1:0             # any free port (printed on stderr)
  netsvc exchange --unix /tmp/netsvc.sock          # a Unix socket only
  netsvc exchange --connect hub-b:11111            # join another hub (mesh)
  netsvc exchange --config netsvc.toml             # settings from a file; flags override

With no --listen and no --unix (from flags or the file) it listens on 127.0.0.1:11111.
SIGINT or SIGTERM shuts it down gracefully: clients are told, exit code 0.";

#[derive(Debug, Args)]
pub(crate) struct ExchangeArgs {
    /// Listen on this TCP address (repeatable; port 0 picks a free port). Replaces the
    /// config file's `listen`.
    #[arg(short, long, value_name = "ADDR")]
    pub(crate) listen: Vec<String>,
    /// Listen on this Unix socket path too (an existing socket file there is replaced).
    #[arg(long, value_name = "PATH")]
    pub(crate) unix: Option<PathBuf>,
    /// The exchange group ("" is the default group).
    #[arg(short, long, value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// Link to another exchange server, HOST:PORT or unix:PATH (repeatable; forms a mesh).
    /// Replaces the config file's `connect`.
    #[arg(short = 'c', long = "connect", value_name = "ADDR")]
    pub(crate) connect: Vec<String>,
    /// Seconds between attempts to reach a --connect peer, and to relink after a loss
    /// (default 5).
    #[arg(long, value_name = "SECS", value_parser = parse::seconds)]
    pub(crate) retry: Option<Duration>,
    /// A TOML config file (see netsvc.example.toml); flags override its settings.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

const SERVICES_EXAMPLES: &str = "\
Examples:
  netsvc services                        # aligned columns
  netsvc services --json                 # one JSON object per service
  netsvc services echo                   # only the services named echo
  netsvc services --watch --json         # the current set, then every change
  NETSVC_EXCHANGE=hub:11111 netsvc services";

#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Only the services with this name.
    #[arg(value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Print the current set, then every announcement until interrupted.
    #[arg(short, long)]
    pub(crate) watch: bool,
    /// One JSON object per line instead of columns.
    #[arg(short, long)]
    pub(crate) json: bool,
    /// Include anonymous services (the helpers of other clients, such as `netsvc monitor`).
    #[arg(short, long)]
    pub(crate) all: bool,
}

const CALL_EXAMPLES: &str = "\
Examples:
  netsvc call echo echo '\"hi\"'                # prints \"hi\"
  netsvc call echo echo 1 2.5 '{\"a\":[true]}' hello
  netsvc call --timeout 2 echo sleep 5      # failure 47 after 2 s, exit 1
  netsvc call echo fail 7 'out of paper'    # failure 7 as JSON on stderr, exit 1

Each ARG is parsed as JSON and taken as a string when it is not valid JSON (--strict:
an error instead). The result is printed as JSON on stdout; a failure prints
{\"error\",\"description\",\"origin\",\"details\"} on stderr and exits 1.";

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Seconds to wait for the response, or `none` to wait as long as the service exists.
    #[arg(short, long, value_name = "SECS", default_value = "60", value_parser = parse::timeout)]
    pub(crate) timeout: parse::Timeout,
    /// Every ARG must be valid JSON (no fallback to a string).
    #[arg(long)]
    pub(crate) strict: bool,
    /// The service's name.
    pub(crate) service: String,
    /// The method.
    pub(crate) method: String,
    /// The arguments, each JSON (or a plain string).
    #[arg(allow_hyphen_values = true)]
    pub(crate) args: Vec<String>,
}

const PUBLISH_EXAMPLES: &str = "\
Examples:
  netsvc publish --service news headline '\"rain\"'               # to current subscribers
  netsvc publish --service news --lifetime 60 headline '\"rain\"' # cached for 60 s
  printf 'a.b 1\\nc.d {\"x\":true}\\n' | netsvc publish --service feed --lifetime forever

A cached report lives in the publisher's process, so with a lifetime a one-shot publish
stays available as the service until the report expires (forever: until interrupted),
and late subscribers receive it. Reading stdin, it stays until EOF; a bad line is
reported on stderr with its number, the rest are published, and the exit code is 1.";

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Publish as a service of this name.
    #[arg(short, long, value_name = "NAME")]
    pub(crate) service: String,
    /// How long each report is cached for later subscribers: seconds, `none` (0) or
    /// `forever` (-1).
    #[arg(
        short,
        long,
        value_name = "SECS|forever",
        default_value = "none",
        value_parser = parse::lifetime,
        allow_hyphen_values = true
    )]
    pub(crate) lifetime: Lifetime,
    /// VALUE must be valid JSON (no fallback to a string).
    #[arg(long)]
    pub(crate) strict: bool,
    /// Seconds to wait, once the service has appeared, before publishing: subscribers
    /// that monitor NAME subscribe when they hear of the new service, and a report
    /// published before their subscription arrives does not reach them.
    #[arg(long, value_name = "SECS", default_value = "0.3", value_parser = parse::seconds)]
    pub(crate) settle: Duration,
    /// The subject. Without SUBJECT and VALUE, lines `SUBJECT JSON` are read from stdin.
    #[arg(requires = "value")]
    pub(crate) subject: Option<String>,
    /// The content: JSON, or a plain string.
    #[arg(allow_hyphen_values = true)]
    pub(crate) value: Option<String>,
}

const MONITOR_EXAMPLES: &str = "\
Examples:
  netsvc monitor clock                           # every report of every clock
  netsvc monitor clock 'system.*'                # only matching subjects
  netsvc monitor --count 1 clock | jq .value     # one report, then exit
  netsvc monitor --events clock                  # publisher notices on stdout too

Each report is one line:
  {\"event\":\"report\",\"service\":\"clock\",\"publisher\":\"3@host:41!clock\",
   \"subject\":\"system.time\",\"pattern\":\"*\",\"value\":{\"$datetime\":\"...\"}}";

#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Exit after this many reports.
    #[arg(short = 'n', long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Print publisher-available, publisher-withdrawn and missed notices as JSON lines on
    /// stdout (without it they are status lines on stderr).
    #[arg(short, long)]
    pub(crate) events: bool,
    /// The publishers' service name.
    pub(crate) service: String,
    /// The subjects to receive, as a glob pattern.
    #[arg(default_value = "*")]
    pub(crate) pattern: String,
}

const DEMO_EXAMPLES: &str = "\
Examples:
  netsvc demo                              # embeds a hub on 127.0.0.1:11111
  netsvc demo --connect 127.0.0.1:11111    # joins a running hub
  netsvc demo --listen 127.0.0.1:0         # embeds a hub on a free port

Services: echo (methods echo, sleep SECS, fail [CODE [DETAILS]]) and clock (method now;
publishes system.time every second with a lifetime of 5 s), both in the group demo.";

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Join this exchange (HOST:PORT or unix:PATH) instead of embedding one. Without
    /// --connect and --listen, NETSVC_EXCHANGE (if set) is joined.
    // Not `env = ..`: clap would then count the variable as a --connect that conflicts with
    // an explicit --listen.
    #[arg(short = 'c', long = "connect", value_name = "ADDR")]
    pub(crate) address: Option<String>,
    /// Embed an exchange listening here (default 127.0.0.1:11111); ignores NETSVC_EXCHANGE.
    #[arg(short, long, value_name = "ADDR", conflicts_with = "address")]
    pub(crate) listen: Option<String>,
    /// The exchange group.
    #[arg(short, long, value_name = "NAME", default_value = "")]
    pub(crate) group: String,
    /// With --connect: how long to wait for the exchange, in seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse::wait_seconds)]
    pub(crate) retry: Duration,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
