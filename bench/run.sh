#!/usr/bin/env bash
# bench/run.sh [--quick]: netsvc side by side with nats-server, mosquitto and raw TCP.
#
# Installs the peers if they are missing (apt), builds netsvc-bench (release), runs every
# workload (W1 throughput, W2 request/reply, W4 late join, W5 reconnect storm, hub memory,
# and the HTTP gateway's JSON-RPC echo beside the native protocol) and writes
# bench/RESULTS.md; then runs W1 and W2 once more with TLS on every link (netsvc
# and nats-server) and adds what TLS costs each. The tool starts each server itself on
# 127.0.0.1 with the committed configuration (bench/nats.conf, bench/mosquitto.conf), pins the hub to CPU 0
# and the load to CPU 1 with taskset where it works, and stops everything it started; this
# script also kills the tool's whole process group on exit.
#
# Time: the full run takes well under 15 minutes on 2 cores; --quick under 2 minutes.
# Not a test: it never fails on a number (CI may run --quick to prove it works).
# Extra arguments after --quick are passed to `netsvc-bench run` (e.g. --systems netsvc,nats).
# The gateway workload also measures the original OSE gateway when NETSVC_BENCH_OSE_PROBE
# names an `oseprobe` binary built elsewhere against the original library; nothing here builds it.
# With it, the ose workload also runs: sequential echo to an original OSE process through
# `netsvc exchange --ose-listen` and through the original's own hub (skipped without it).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
ARGS=()
if [[ ${1:-} == --quick ]]; then
    MODE=quick
    ARGS+=(--quick)
    shift
fi
ARGS+=("$@")

OUT=bench/RESULTS.md
NOTES=()
note() { NOTES+=("$*"); echo "run.sh: $*" >&2; }

# --- peers -------------------------------------------------------------------------------
apt_updated=no
need() { # need PROGRAM PACKAGE
    if [[ -x $1 ]] || command -v "$(basename "$1")" >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        note "$2 is not installed and apt-get is unavailable: its peer is skipped"
        return 1
    fi
    if [[ $apt_updated == no ]]; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt_updated=yes
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; then
        note "apt-get install $2 failed: its peer is skipped"
        return 1
    fi
}
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
MOSQ_BIN=$(command -v mosquitto || echo /usr/sbin/mosquitto)
need "$NATS_BIN" nats-server && NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
need "$MOSQ_BIN" mosquitto && MOSQ_BIN=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# The Debian mosquitto package may start a system instance on 1883; ours uses 11883 and
# nats-server 14222 (see the configurations), so they never collide. Refuse to run on
# ports that something else holds.
for port in 14222 11883; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "run.sh: port $port is in use; stop whatever listens there first" >&2
        exit 1
    fi
done

# --- build -------------------------------------------------------------------------------
build_start=$(date +%s)
# netsvc-cli: the gateway workload runs the real `netsvc exchange --http` and `netsvc demo`.
cargo build --release --locked -p netsvc-bench -p netsvc-cli
build_secs=$(( $(date +%s) - build_start ))
BIN=target/release/netsvc-bench

# --- run -----------------------------------------------------------------------------------
# W5 and the memory workload hold a descriptor per client in the hub and in the client
# processes, which inherit this limit: raise the soft limit as far as the hard one allows
# (the tool checks it, and forbids itself the unsafe code a setrlimit would need).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PIN="taskset -c 1"
if ! taskset -c 1 true 2>/dev/null; then
    PIN=""
fi
TABLES=$(mktemp)
TOOL_PID=""
cleanup() {
    if [[ -n $TOOL_PID ]] && kill -0 "$TOOL_PID" 2>/dev/null; then
        # The tool leads its own process group: the hub, the peers and every role.
        kill -TERM -- "-$TOOL_PID" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$TOOL_PID" 2>/dev/null || true
    fi
    rm -f "$TABLES" "${TLS_TABLES:-}" "${TLS_COST:-}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CMD=("$BIN" run "${ARGS[@]}"
     --nats-server "$NATS_BIN" --nats-config bench/nats.conf --nats-port 14222
     --mosquitto "$MOSQ_BIN" --mosquitto-config bench/mosquitto.conf --mqtt-port 11883
     --markdown "$TABLES" --json bench/results.json)
echo "run.sh: ${PIN:+$PIN }${CMD[*]}" >&2
run_start=$(date +%s)
# setsid: the tool gets its own process group, which cleanup() can kill whole.
setsid $PIN "${CMD[@]}" &
TOOL_PID=$!
status=0
wait "$TOOL_PID" || status=$?
TOOL_PID=""
run_secs=$(( $(date +%s) - run_start ))
if [[ $status -ne 0 ]]; then
    echo "run.sh: netsvc-bench failed with status $status" >&2
    exit "$status"
fi

# --- TLS pass -------------------------------------------------------------------------------
# W1 and W2 again with TLS on every link, for netsvc and nats-server (the run makes its own
# certificates), and a table of what TLS costs each, from this run's plain figures.
TLS_TABLES=$(mktemp)
TLS_COST=$(mktemp)
tls_status=0
if [[ " ${ARGS[*]} " != *" --systems "* ]] || [[ " ${ARGS[*]} " == *netsvc* ]]; then
    TLS_CMD=("$BIN" run --tls --systems netsvc,nats --workloads w1,w2)
    if [[ $MODE == quick ]]; then
        TLS_CMD+=(--quick)
    fi
    TLS_CMD+=(--nats-server "$NATS_BIN" --nats-config bench/nats.conf --nats-port 14222
              --markdown "$TLS_TABLES" --json bench/results-tls.json)
    echo "run.sh: ${PIN:+$PIN }${TLS_CMD[*]}" >&2
    setsid $PIN "${TLS_CMD[@]}" &
    TOOL_PID=$!
    wait "$TOOL_PID" || tls_status=$?
    TOOL_PID=""
    if [[ $tls_status -eq 0 ]]; then
        "$BIN" tls-cost bench/results.json bench/results-tls.json > "$TLS_COST" || tls_status=$?
    fi
fi

# --- report --------------------------------------------------------------------------------
crate_version() { # the locked version of a crate
    awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}
version_of() { "$@" 2>&1 | head -1 || true; }
pinned="hub (netsvc-bench role netsvc-hub / tcp-hub, nats-server, mosquitto) on CPU 0 with \`taskset -c 0\`; publishers, subscribers, callers and services on CPU 1 with \`taskset -c 1\`; the orchestrator on CPU 1"
if [[ -z $PIN ]]; then
    pinned="NOT pinned: taskset does not work here, so hub and load share both CPUs"
fi
{
    echo "# netsvc-bench results"
    echo
    echo "Written by \`bench/run.sh${ARGS:+ ${ARGS[*]}}\` ($MODE run). Every ratio compares figures from this same run."
    echo "Not a timed test: nothing fails on a number."
    echo
    echo "## Run"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
    echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes numbers noisy)"
    echo "- Versions: $(version_of "$NATS_BIN" --version); $(version_of "$MOSQ_BIN" -h); $(rustc --version)"
    echo "- netsvc: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' plus uncommitted changes in crates/')"
    echo "- Client crates: async-nats $(crate_version async-nats), rumqttc $(crate_version rumqttc), hdrhistogram $(crate_version hdrhistogram), tokio $(crate_version tokio)"
    echo "- Command: \`${PIN:+$PIN }${CMD[*]}\` (the tables file is a temporary file)"
    echo "- Pinning: $pinned. Every process is single-threaded (a current-thread tokio runtime for ours; nats-server sizes GOMAXPROCS from its affinity, so 1; mosquitto is single-threaded)."
    echo "- Build: ${build_secs} s (incremental); run: ${run_secs} s."
    echo
    echo "Systems: **netsvc** (this workspace, hub = \`netsvc-bench role netsvc-hub\`, a Runtime + server Exchange; clients = Runtime + client Exchange); **nats-server** (Debian) driven with **async-nats**; **mosquitto** (Debian, QoS 0) driven with **rumqttc**; **raw TCP via relay** (\`role tcp-hub\`, a minimal length-framed relay with the same process layout as the brokers); **raw TCP direct** (load process to load process, no hub: the physical floor). Same payload generator (sequence number + send timestamp + padding) and the same HDR histograms for all."
    cat "$TABLES"
    echo
    echo "## With TLS: what it costs netsvc and nats-server"
    echo
    if [[ -s $TLS_COST ]]; then
        echo "W1 and W2 again, in a second pass of the same run with TLS on every link (\`netsvc-bench run --tls\`: a CA and a hub certificate for 127.0.0.1 made by the run; netsvc's hub and clients use rustls with ring, nats-server its Go TLS, async-nats rustls). Targets: TLS costs netsvc ≤ 15% throughput and ≤ 20 µs p50, and netsvc with TLS stays ahead of nats-server with TLS."
        echo
        cat "$TLS_COST"
    else
        echo "Not measured in this run (status $tls_status)."
    fi
    echo
    echo "## Caveats"
    echo
    echo "- nats-server is Debian's 2.9.10 (2023): newer servers handle slow consumers differently. async-nats 0.51 targets newer servers: its \`create_key_value\` cannot parse 2.9.10's account-info reply, so W4 creates the KV bucket's stream by hand with the settings \`create_key_value\` uses (history 1) and then opens it with \`get_key_value\`; \`watch_all\` in async-nats delivers only new updates, so W4 uses \`watch_with_history(\">\")\` (last value per key, like Go's \`WatchAll\`)."
    echo "- Client libraries matter: async-nats (not the Go client), rumqttc (not Paho). In W1 mosquitto itself ran at ~85–100% of CPU 0 (it writes each message to each subscriber with its own system call), so its figures are the broker's limit here, not rumqttc's. rumqttc fails a connection whose socket flush takes over its connection timeout (raised to 120 s here, default 5 s), and its publisher's socket send buffer is capped at 256 KiB so that the QoS 1 flush barrier does not wait behind a huge kernel backlog."
    echo "- W5 netsvc: a client counts as set up once it has its first \`Resynced\` event and the cached value on all 5 subscriptions; clients that are not set up within 90 s are reported (\"set up before the kill\") and the storm goes ahead without waiting for them. Each client process (4, or one per 500 clients beyond 2,000) starts its clients in waves of 100, each once the one before is set up (or after 10 s); before the kill the tool waits up to 30 s for the hub's registry to hold every set-up client's service."
    echo "- W1: netsvc uses \`publish_paced\`: its REPORT frames carry the paced flag, so the hub stops reading the publisher's link while a subscriber's link is over its soft limit (8 MiB), the publisher's own link fills and the publisher waits; nothing is coalesced on the way (coalesced reports would count as lost). NATS and MQTT QoS 0 publishers are not paced by their subscribers at all (only by TCP)."
    echo "- W2's \"raw TCP\" target uses the relay (same two-hop layout as every hub); the direct figures are the one-hop floor."
    echo "- W5: netsvc clients reconnect with the library's default, \`Retry::default()\` (after a loss, attempts at most 500 ms apart for 20 attempts, the first delay drawn so that the crowd attempts at an even rate), as async-nats uses its default (0, 2, 4, ... ms, no jitter). NATS has no registry, so the registry check is netsvc-only; NATS's lost count is the outage messages (every 20 ms on 5 subjects) that never arrived."
    echo "- Memory: RSS deltas include allocator slack; nats-server is a Go process whose heap grows in steps. A netsvc link's read buffer starts at 4 KiB, doubles (to 64 KiB) while reads fill it and is freed when the link idles; its write buffers hold only what is queued and are freed after a burst. So RSS per connection depends on how much traffic each link has seen, and a phase that follows one that freed memory (the service phase floods every link with registry announcements) reuses it, which can hide its own cost in RSS."
    echo "- Gateway: the hub is the real \`netsvc exchange --http\` (CPU 0) and the service the real \`netsvc demo\` (CPU 1), both multi-threaded tokio runtimes sized by their affinity (one CPU each); the original, when measured, is \`oseprobe -listen P -http H\` (CPU 0) with the echo in a second \`oseprobe -connect P\` (CPU 1), the same layout. The original answers HTTP/1.0 with \`Connection: Close\`, so its clients open a connection per call."
    echo "- OSE (only with NETSVC_BENCH_OSE_PROBE): the service is always the original \`oseprobe -connect O -name ose-echo\` (CPU 1), which writes a \`REQUEST\` line to its log for every call, in every target alike; the hubs are \`netsvc exchange --listen A --ose-listen O\` or \`oseprobe -listen P\` (CPU 0); the OSE-protocol caller is a thin client of this tool's (handshake, then one request at a time), not the original's library."
    echo "- Profiling: \`NETSVC_BENCH_PROFILE_ROLE=netsvc-hub NETSVC_BENCH_PROFILE_WRAPPER='valgrind --tool=callgrind' target/release/netsvc-bench run --quick --systems netsvc --workloads w1 --w1-cases 16x4\` runs one role under a profiler (any role: w1-pub, w1-sub, w2-caller, ...); release binaries have symbols but no line tables: \`cargo build --profile profiling\` and \`target/profiling/netsvc-bench\` give those."
    if [[ ${#NOTES[@]} -gt 0 ]]; then
        for n in "${NOTES[@]}"; do echo "- $n"; done
    fi
} > "$OUT"
echo "run.sh: wrote $OUT (run ${run_secs} s)" >&2
