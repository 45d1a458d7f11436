//! The command line: every command, flag and help text. The behaviour lives in `cmd/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use netsvc::Lifetime;

use crate::parse;
use crate::security::ClientSecurityArgs;

/// The port of the original manual, on the loopback interface: a hub is private to the
/// machine unless it is told otherwise.
pub(crate) const DEFAULT_ADDRESS: &str = "127.0.0.1:11111";

const TOP_EXAMPLES: &str = "\
Examples:
  netsvc exchange &                        # a hub on 127.0.0.1:11111
  netsvc demo --connect 127.0.0.1:11111 &  # example services echo and clock join it
  netsvc monitor --count 1 clock           # waits for the clock, prints one report
  netsvc services                          # what is there
  netsvc call echo echo '\"hi\"'             # call a method; prints \"hi\"
  netsvc monitor --all                     # every report of every service (Ctrl-C ends it)

Commands that run until stopped wait for the hub as long as it takes (saying why it
cannot be reached yet); call and services wait at most --wait seconds (default 5).

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
    /// Ask a hub about itself: version, uptime, services, links, requests and their
    /// latencies, reports (through its introspection service, netsvc.exchange).
    #[command(after_help = INFO_EXAMPLES)]
    Info(InfoArgs),
    /// List the methods a service exports (its answer to system.listMethods).
    #[command(after_help = METHODS_EXAMPLES)]
    Methods(MethodsArgs),
    /// Publish reports as a service.
    #[command(after_help = PUBLISH_EXAMPLES)]
    Publish(PublishArgs),
    /// Print the reports of every service of a name (or of all), one JSON object per line.
    #[command(
        after_help = MONITOR_EXAMPLES,
        override_usage = "netsvc monitor [OPTIONS] SERVICE [PATTERN]\n       netsvc monitor [OPTIONS] --all [PATTERN]"
    )]
    Monitor(MonitorArgs),
    /// Host a method whose requests a shell command answers (or a fixed reply).
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Host example services (echo, clock) so there is something to look at.
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
    /// Serve HTTP for the services of an exchange: the original gateway's dialects,
    /// JSON-RPC 2.0, and the registry as JSON and as Server-Sent Events (docs/GATEWAY.md).
    #[command(after_help = GATEWAY_EXAMPLES)]
    Gateway(GatewayArgs),
    /// Print the argon2 hash of a password read from stdin, for a users file.
    #[command(after_help = PASSWD_EXAMPLES)]
    Passwd,
    /// Make a development CA and a hub certificate for the given names (as mkcert does):
    /// ca.pem and ca.key once, reused on later runs, then NAME.pem and NAME.key.
    #[command(after_help = CERT_EXAMPLES)]
    Cert(CertArgs),
}

const CERT_EXAMPLES: &str = "\
Examples:
  netsvc cert --out certs localhost 127.0.0.1      # a hub on this machine
  netsvc cert --out certs hub.example 10.0.0.5     # another certificate, same CA
Clients trust certs/ca.pem (--tls-ca); keep certs/ca.key secret. For development only:
production certificates come from your CA (docs/SECURITY.md, *A certificate that works*).";

/// `netsvc cert`'s arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct CertArgs {
    /// The directory of the CA and the certificates (made if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) out: PathBuf,
    /// Replace NAME.pem and NAME.key even if this command did not make them.
    #[arg(long)]
    pub(crate) force: bool,
    /// The DNS names and IP addresses the certificate covers; the first names its files.
    #[arg(value_name = "NAME", required = true)]
    pub(crate) names: Vec<String>,
}

const PASSWD_EXAMPLES: &str = "\
Examples:
  netsvc passwd                      # type the password, then Enter
  printf '%s' \"$PW\" | netsvc passwd   # from a script
The hash goes in the users file: [users.NAME] password_hash = \"...\" (docs/SECURITY.md).";

/// How a client command reaches the exchange.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectArgs {
    /// The exchange to connect to: HOST:PORT or unix:PATH.
    #[arg(
        short = 'c',
        long = "connect",
        value_name = "ADDR",
        env = "NETSVC_EXCHANGE",
        default_value = DEFAULT_ADDRESS,
        value_parser = parse::exchange_address
    )]
    pub(crate) address: String,
    /// The exchange group to join ("" is the default group). Services whose audience is a
    /// group are only visible through exchanges of that group.
    #[arg(short, long, value_name = "NAME", default_value = "")]
    pub(crate) group: String,
    /// Seconds between attempts to reach the exchange, and before relinking after a loss.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse::retry)]
    pub(crate) retry: Duration,
    /// How long to wait for the link to the exchange before giving up: seconds (at least
    /// 0.2), or `forever` [default: 5 for call, services and a one-shot publish; forever for
    /// the commands that run until stopped]
    #[arg(long, value_name = "SECS|forever", value_parser = parse::wait)]
    pub(crate) wait: Option<parse::Wait>,
    #[command(flatten)]
    pub(crate) security: ClientSecurityArgs,
}

const EXCHANGE_EXAMPLES: &str = "\
Examples:
  netsvc exchange                                  # 127.0.0.1:11111, this machine only
  netsvc exchange --listen 0.0.0.0:11111           # open to the network
  netsvc exchange --listen 127.0.0.1:0             # any free port (printed on stderr)
  netsvc exchange --unix /tmp/netsvc.sock          # a Unix socket only
  netsvc exchange --connect hub-b:11111            # join another hub (mesh)
  netsvc exchange --nats nats://n1:4222 --nats nats://n2:4222
                                                   # hubs joined through a NATS cluster
  netsvc exchange --config netsvc.toml             # settings from a file; flags override
  netsvc exchange --ose-listen 127.0.0.1:11112     # original OSE processes join here too
  netsvc exchange --ose-connect ose-hub:11000      # and this hub joins an OSE exchange
  netsvc exchange --listen 0.0.0.0:11111 --tls-cert hub.pem --tls-key hub.key \
      --users users.toml                           # TLS and logins (docs/SECURITY.md)

With no --listen and no --unix (from flags or the file) it listens on 127.0.0.1:11111.
SIGINT or SIGTERM shuts it down gracefully: clients are told, exit code 0. SIGHUP
reloads the users file (links whose user's permissions changed are closed to log in
again) and the TLS certificate (for the connections that follow).";

#[derive(Debug, Args)]
pub(crate) struct ExchangeArgs {
    /// Listen on this TCP address (repeatable; port 0 picks a free port). Replaces the
    /// config file's `listen`.
    #[arg(short, long, value_name = "ADDR")]
    pub(crate) listen: Vec<String>,
    /// Listen on this Unix socket path too. A file that is not a socket, or a socket that
    /// something still listens on, is refused; a stale socket is replaced. Removed on shutdown.
    #[arg(long, value_name = "PATH")]
    pub(crate) unix: Option<PathBuf>,
    /// The exchange group ("" is the default group).
    #[arg(short, long, value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// Link to another exchange server, HOST:PORT or unix:PATH (repeatable; forms a mesh).
    /// Replaces the config file's `connect`.
    #[arg(short = 'c', long = "connect", value_name = "ADDR", value_parser = parse::exchange_address)]
    pub(crate) connect: Vec<String>,
    /// Join this NATS cluster as the backbone to the other hubs of the exchange group
    /// (nats://HOST:PORT, repeatable for failover; docs/SCALING.md). Replaces the config
    /// file's `[nats] urls`; credentials come from `[nats]` or the URL.
    #[arg(long = "nats", value_name = "URL")]
    pub(crate) nats: Vec<String>,
    /// The first token of this hub's NATS subjects (default `netsvc`).
    #[arg(long, value_name = "TOKEN", requires = "nats")]
    pub(crate) nats_prefix: Option<String>,
    /// Seconds between attempts to reach a --connect peer, and to relink after a loss
    /// (default 5).
    #[arg(long, value_name = "SECS", value_parser = parse::seconds)]
    pub(crate) retry: Option<Duration>,
    /// A TOML config file (see netsvc.example.toml); flags override its settings.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Serve TLS only on the TCP listeners, with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Verify client certificates against this CA (PEM); their names can log users in.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate that --tls-client-ca signs.
    #[arg(long, requires = "tls_client_ca")]
    pub(crate) require_client_cert: bool,
    /// Users, their credentials and permissions (TOML, docs/SECURITY.md); peers must log
    /// in. Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub(crate) users: Option<PathBuf>,
    /// The file mode of the --unix socket, in octal (e.g. 660: owner and group only).
    #[arg(long, value_name = "OCTAL", value_parser = parse::file_mode)]
    pub(crate) unix_mode: Option<u32>,
    /// Also serve the HTTP gateway on this address (docs/GATEWAY.md), for the hub's
    /// services; not on the network unless the address says so.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<String>,
    #[command(flatten)]
    pub(crate) http_options: HttpOptions,
    /// Link to the --connect peers with TLS, trusting this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) peer_tls_ca: Option<PathBuf>,
    /// Log in to the --connect peers with the token on this file's first line.
    #[arg(long, value_name = "FILE")]
    pub(crate) peer_token_file: Option<PathBuf>,
    /// Do not host the introspection service netsvc.exchange, which tells any client that
    /// may see and call it this hub's version, links and stats (`netsvc info`).
    #[arg(long)]
    pub(crate) no_introspection: bool,
    /// Accept original OSE processes (clients and servers) on this TCP address, in the OSE
    /// exchange protocol (repeatable; docs/PROTOCOL.md, "The OSE dialect"). Replaces the
    /// config file's `[ose] listen`.
    #[arg(long, value_name = "ADDR")]
    pub(crate) ose_listen: Vec<String>,
    /// Join the original OSE exchange server at HOST:PORT as an exchange client, retrying
    /// every --retry seconds (repeatable). Replaces the config file's `[ose] connect`.
    #[arg(long, value_name = "ADDR")]
    pub(crate) ose_connect: Vec<String>,
    /// With --users: the user of the users file whose permissions apply to everything the
    /// OSE peers do (the original protocol has no logins). Required with --users and an
    /// OSE listener or server. Replaces the config file's `[ose] user`.
    #[arg(long, value_name = "NAME")]
    pub(crate) ose_user: Option<String>,
    /// Accept OSE peers only from this address or network (e.g. 10.0.0.0/8; repeatable),
    /// as the original's `authorise(host)`. Replaces the config file's `[ose] allow`.
    #[arg(long, value_name = "ADDR[/LEN]")]
    pub(crate) ose_allow: Vec<String>,
}

const GATEWAY_EXAMPLES: &str = "\
Examples:
  netsvc gateway                                   # hub 127.0.0.1:11111, HTTP on 127.0.0.1:8080
  netsvc gateway --connect hub:11111 --http 127.0.0.1:0   # any free port (printed on stderr)
  netsvc gateway --expose group:web                # only the members of the group web
  curl -s -d '{\"id\":1,\"method\":\"echo\",\"params\":[\"hi\"]}' http://127.0.0.1:8080/service/echo
  curl -s -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo.echo\",\"params\":[1]}' \\
      http://127.0.0.1:8080/jsonrpc
  curl -sN http://127.0.0.1:8080/api/events        # the registry, then every change

Without --logins there is no login on the HTTP side: anyone who can reach the port may
call every exposed service, as the gateway's own login. It listens on loopback unless
--http says otherwise (and then says so). With --logins each request logs in to the hub:
  netsvc gateway --logins --connect hub:11111 --tls-ca ca.pem --http-tls-cert c.pem --http-tls-key k.pem
  curl -s -H 'Authorization: Bearer TOKEN' https://127.0.0.1:8080/api/services";

/// Settings of the HTTP gateway, for `netsvc gateway` and `netsvc exchange --http`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HttpOptions {
    /// Which services HTTP clients may call: all, local (this process's only),
    /// group:NAME (the members of a group) or name:NAME (one service name).
    #[arg(long, value_name = "WHICH", default_value = "all", value_parser = parse::exposure)]
    pub(crate) expose: netsvc_gateway::Exposure,
    /// Seconds an HTTP call may take before it fails with 47 (Request Timeout).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse::seconds)]
    pub(crate) request_timeout: Duration,
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, value_name = "BYTES", default_value = "4194304")]
    pub(crate) max_body: usize,
    /// Serve HTTPS only, with this certificate chain (PEM; needs --http-tls-key). A hub
    /// with --tls-cert serves HTTPS with its own certificate unless this is given.
    #[arg(long, value_name = "FILE", requires = "http_tls_key")]
    pub(crate) http_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --http-tls-cert.
    #[arg(long, value_name = "FILE", requires = "http_tls_cert")]
    pub(crate) http_tls_key: Option<PathBuf>,
    /// Most HTTP connections open at once; more wait in the kernel's backlog.
    #[arg(long, value_name = "N", default_value = "4096")]
    pub(crate) max_connections: usize,
    /// Seconds an HTTP connection may stay with nothing read or written before it is
    /// closed (keep it above --request-timeout and the event streams' 15 s keep-alive).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse::positive_seconds)]
    pub(crate) idle_timeout: Duration,
    /// Seconds a request's line and headers may take to arrive, from their first byte;
    /// past it the connection is closed (a client dripping bytes cannot hold it).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse::positive_seconds)]
    pub(crate) header_timeout: Duration,
    /// A publisher service the gateway hosts, so that HTTP clients may publish reports as
    /// it (POST /api/reports/NAME/SUBJECT); repeatable.
    #[arg(long = "publisher", value_name = "NAME", value_parser = parse::service_name)]
    pub(crate) publishers: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// The HTTP address to serve (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) http: String,
    #[command(flatten)]
    pub(crate) options: HttpOptions,
    /// Each HTTP request logs in to the hub with its own credentials (Basic, Bearer, or the
    /// page's login), in a link of its own, and gets that user's permissions; a request
    /// without any gets the hub's [anonymous] permissions, or 401. The gateway then has no
    /// login of its own (--user and --token-file are not used).
    #[arg(long)]
    pub(crate) logins: bool,
    /// With --logins, serve plain HTTP off loopback even though passwords then cross the
    /// network in clear (refused otherwise: give --http-tls-cert, or use tokens).
    #[arg(long, requires = "logins")]
    pub(crate) http_plaintext_passwords: bool,
}

const SERVICES_EXAMPLES: &str = "\
Examples:
  netsvc services                        # aligned columns
  netsvc services --json                 # one JSON object per service
  netsvc services echo                   # only the services named echo
  netsvc services --watch --json         # the current set, then every change
  netsvc services --wait 30              # give a hub that is starting 30 s
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
    /// Include anonymous services (the helpers of other clients, such as `netsvc monitor`)
    /// and netsvc's own (names beginning `netsvc.`, such as a hub's `netsvc.exchange`).
    #[arg(short, long)]
    pub(crate) all: bool,
}

const INFO_EXAMPLES: &str = "\
Examples:
  netsvc info                            # the hub at 127.0.0.1:11111
  netsvc info --connect hub:11111 --json # its stats as one JSON object
  netsvc info --all                      # every hub visible through it

Counts grow from the hub's start: two --json snapshots give rates. The hub answers through
its service netsvc.exchange (methods info, stats, links), which any client may call.";

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// The stats as one JSON object per hub instead of tables.
    #[arg(short, long)]
    pub(crate) json: bool,
    /// Ask every hub visible, not only the one connected to.
    #[arg(short, long)]
    pub(crate) all: bool,
    /// Seconds to wait for each hub's answer.
    #[arg(short, long, value_name = "SECS", default_value = "10", value_parser = parse::timeout)]
    pub(crate) timeout: parse::Timeout,
}

const METHODS_EXAMPLES: &str = "\
Examples:
  netsvc methods echo                    # one method name per line
  netsvc methods --json echo             # a JSON array";

#[derive(Debug, Args)]
pub(crate) struct MethodsArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// A JSON array instead of one name per line.
    #[arg(short, long)]
    pub(crate) json: bool,
    /// Seconds to wait for the answer.
    #[arg(short, long, value_name = "SECS", default_value = "10", value_parser = parse::timeout)]
    pub(crate) timeout: parse::Timeout,
    /// The service's name.
    pub(crate) service: String,
}

const CALL_EXAMPLES: &str = "\
Examples:
  netsvc call echo echo '\"hi\"'                # prints \"hi\"
  netsvc call echo echo 1 2.5 '{\"a\":[true]}' hello
  netsvc call --timeout 2 echo sleep 5      # failure 47 after 2 s, exit 1
  netsvc call echo fail 7 'out of paper'    # failure 7 as JSON on stderr, exit 1
  netsvc call --args big.json echo echo     # the arguments as a JSON array in a file
  produce-json | netsvc call --args - echo echo

Each ARG is parsed as JSON and taken as a string when it is not valid JSON (--strict:
an error instead); JSON nested deeper than 64 levels is an error. The result is printed
as JSON on stdout; a failure prints {\"error\",\"description\",\"origin\",\"details\"} on
stderr and exits 1. No link within --wait seconds (default 5): exit 2, with the cause.";

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
    /// Read the arguments from FILE (`-`: stdin) instead: a JSON array with one element per
    /// argument. For arguments too long for a command line (Linux: 128 KiB each).
    #[arg(long = "args", value_name = "FILE", conflicts_with = "args")]
    pub(crate) args_file: Option<PathBuf>,
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
  netsvc monitor --all                           # every report of every publisher
  netsvc monitor --all 'system.*'                # ... whose subject matches

PATTERN is a glob: * any run of characters (dots included), ? one character; default *.

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
    /// The reports of every publisher, whatever its name; the one argument is then PATTERN.
    #[arg(short, long)]
    pub(crate) all: bool,
    /// The publishers' service name.
    #[arg(value_name = "SERVICE", required_unless_present = "all")]
    pub(crate) service: Option<String>,
    /// The subjects to receive, as a glob pattern [default: *].
    #[arg(value_name = "PATTERN")]
    pub(crate) pattern: Option<String>,
}

const SERVE_EXAMPLES: &str = "\
Examples:
  netsvc serve greet hello -- echo hello               # result: \"hello\"
  netsvc serve calc sum -- jq -c 'add'                 # the arguments come on stdin
  netsvc serve env show -- sh -c 'echo \"$NETSVC_ARGS\"'
  netsvc serve --reply '{\"ok\":true}' health check      # a fixed reply, no command
  netsvc call calc sum 1 2 3                           # prints 6

For each request COMMAND runs with the arguments as a JSON array on stdin (and in
NETSVC_ARGS when under 32 KiB; NETSVC_SERVICE, NETSVC_METHOD, NETSVC_SENDER, NETSVC_USER
too). Its
stdout, as JSON (else as a string; empty: null), is the result. Exit status N > 0 fails
the request with code N, origin \"serve\", stderr as details; past --timeout the command
(its whole process group) is killed and the caller gets 47. SIGINT/SIGTERM withdraw the
service and exit 0.";

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Answer every request with this value (JSON, or a plain string) instead of running a
    /// command.
    #[arg(
        long,
        value_name = "VALUE",
        conflicts_with = "command",
        allow_hyphen_values = true
    )]
    pub(crate) reply: Option<String>,
    /// Seconds a command may run (and a request wait for a free slot) before it is killed
    /// and the caller told 47.
    #[arg(short, long, value_name = "SECS", default_value = "30", value_parser = parse::positive_seconds)]
    pub(crate) timeout: Duration,
    /// How many commands run at once; further requests wait for a free slot.
    #[arg(
        short,
        long,
        value_name = "N",
        default_value = "4",
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub(crate) jobs: u32,
    /// The service's name.
    pub(crate) service: String,
    /// The method.
    pub(crate) method: String,
    /// The command to run for each request, and its arguments (after `--`).
    #[arg(last = true, value_name = "COMMAND", required_unless_present = "reply")]
    pub(crate) command: Vec<String>,
}

const DEMO_EXAMPLES: &str = "\
Examples:
  netsvc demo                              # embeds a hub on 127.0.0.1:11111
  netsvc demo --connect 127.0.0.1:11111    # joins a running hub
  netsvc demo --listen 127.0.0.1:0         # embeds a hub on a free port
  netsvc demo --connect 127.0.0.1:11111 -g team   # joins a hub of group team

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
    /// With --connect: seconds between attempts to reach the exchange, and before relinking
    /// after a loss.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse::retry)]
    pub(crate) retry: Duration,
    /// With --connect: how long to wait for the exchange before giving up: seconds, or
    /// `forever`.
    #[arg(long, value_name = "SECS|forever", default_value = "forever", value_parser = parse::wait)]
    pub(crate) wait: parse::Wait,
    #[command(flatten)]
    pub(crate) security: ClientSecurityArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
