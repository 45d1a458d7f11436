#!/usr/bin/env bash
# bench/w5-scale.sh: W5 (hub SIGKILLed and restarted with N clients) against the number of
# clients, for netsvc with the scoped registry and nats-server at 250, 500, 1,000, 2,000
# and 4,000 clients, and netsvc with the whole registry up to 2,000 (at 4,000 a storm is 16
# million SERVICE frames). Writes bench/W5-SCALE.md.
#
# Each point is one `netsvc-bench run --workloads w5` under `timeout 180`, so a hang costs
# minutes; a point that fails or times out is shown as such. Expects what bench/run.sh
# installs and builds (nats-server, target/release/netsvc-bench). About 5 to 15 minutes.
# The raw figures of every point go to bench/W5-SCALE.json.
# Not a test: it never fails on a number.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release/netsvc-bench
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
OUT=bench/W5-SCALE.md
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
# One descriptor per client in the hub and the client processes (see bench/run.sh).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

point() { # LABEL CLIENTS SYSTEM REGISTRY
    local status=0
    timeout 180 setsid "$BIN" run --systems "$3" --registry "$4" --workloads w5 --clients "$2" \
        --nats-server "$NATS_BIN" --nats-config bench/nats.conf --nats-port 14222 \
        --json "$DIR/$1.json" >"$DIR/$1.log" 2>&1 || status=$?
    echo "w5-scale.sh: $1: status $status" >&2
    echo "$status" >"$DIR/$1.status"
}

for n in 250 500 1000 2000 4000; do
    point "scoped-$n" "$n" netsvc scoped
    point "nats-$n" "$n" nats whole
    if [[ $n -le 2000 ]]; then
        point "whole-$n" "$n" netsvc whole
    fi
done

python3 - "$DIR" "$OUT" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, sys
d, out, commit = sys.argv[1], sys.argv[2], sys.argv[3]
def run(label):
    try:
        status = open(f"{d}/{label}.status").read().strip()
        runs = json.load(open(f"{d}/{label}.json"))["w5"]
        return runs[0] if runs else f"no result (status {status})"
    except (OSError, ValueError, KeyError, IndexError):
        return "no result (timed out or failed)"
def ms(v):
    return "never" if v is None or v == float("inf") or v > 1e12 else f"{v:,.0f}"
def cells(r):
    if isinstance(r, str):
        return [r, "", "", ""]
    p = r["resynced_ms"]
    return [f"{r['set_up']:,} of {r['clients']:,}", " / ".join(ms(x) for x in p),
            f"{r['not_resynced']:,}", f"{r['duplicates']} / {r['lost'] if r['system'] != 'nats' else '-'}"]
lines = [
    "# W5 against the number of clients",
    "",
    f"Made by `bench/w5-scale.sh` at commit {commit}: each point is one `netsvc-bench run "
    "--workloads w5 --clients N` (hub SIGKILLed with every client set up, restarted on the "
    "same port 1 s later; see bench/RESULTS.md, W5, for what reconnected and resynced mean). "
    "Times in ms from the hub accepting connections again. netsvc with the scoped registry "
    "(`RegistrySync::Scoped`: each client is told of the publisher it monitors) and with the "
    "whole registry (every client told of every service; up to 2,000 clients), nats-server "
    "with async-nats. Beyond 1,000 clients the NATS publisher's interval grows with the "
    "clients (see `workloads/w5.rs`), so its resync times carry up to that interval (40 ms at "
    "2,000, 83 ms at 4,000) of resolution. Both CPUs of the machine: the hub on one, every "
    "client process on the other.",
    "",
    "| clients | system | set up before the kill | resynced p50 / p99 / 100% | not resynced | duplicates / lost values | 100% / nats-server's |",
    "|---:|---|---|---|---:|---|---:|",
]
for n in (250, 500, 1000, 2000, 4000):
    nats = run(f"nats-{n}")
    for label, name in ((f"scoped-{n}", "netsvc, scoped registry"), (f"whole-{n}", "netsvc, whole registry"), (f"nats-{n}", "nats-server")):
        if not os.path.exists(f"{d}/{label}.status"):
            continue
        r = run(label)
        ratio = ""
        if not isinstance(r, str) and not isinstance(nats, str) and label != f"nats-{n}":
            # JSON has no infinity: a 100% never reached is null.
            a, b = r["resynced_ms"][2], nats["resynced_ms"][2]
            if a is not None and b is not None and a < 1e12 and 0 < b < 1e12:
                ratio = f"{a / b:.2f}x"
        lines.append(f"| {n:,} | {name} | " + " | ".join(cells(r)) + f" | {ratio} |")
open(out, "w").write("\n".join(lines) + "\n")
# The raw figures of every point beside the table.
raw = {label[:-5]: json.load(open(f"{d}/{label}"))["w5"] for label in sorted(os.listdir(d))
       if label.endswith(".json")}
json.dump(raw, open(out.replace(".md", ".json"), "w"), indent=1)
print(f"w5-scale.sh: wrote {out}", file=sys.stderr)
PY
