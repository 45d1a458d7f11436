#!/usr/bin/env python3
"""Python beside Rust on one netsvc hub (a benchmark, not a test: nothing fails on a number).

Runs, against one `netsvc-bench role netsvc-hub` (release builds):
  1. Rust caller -> Rust service      (netsvc-bench roles w2-caller, w2-server)
  2. Python caller -> Rust service    (netsvc.aio, netsvc.client, the original API)
  3. Rust caller -> Python service    (an netsvc.aio service and an original-API service)
  4. Rust publisher -> Python subscriber (netsvc-bench role w1-pub; netsvc.aio monitor and
     the original API's monitorReports), reports per second received.
Sequential calls carry the benchmark's 128-byte payload; latency is per round trip.

    cargo build --release -p netsvc-bench
    (cd crates/netsvc-py && maturin build --release -o ../../target/py-wheels)
    pip install target/py-wheels/netsvc-*.whl
    python bench/python.py [--calls 5000] [--reports 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZE = 128
WARMUP = 1 << 63


def payload(seq: int) -> bytes:
    return struct.pack("<QQ", seq, time.time_ns()) + bytes(SIZE - 16)


class Role:
    """A `netsvc-bench role ...` process, driven by its stdin/stdout line protocol."""

    def __init__(self, bench: str, *args: str) -> None:
        self.p = subprocess.Popen([bench, "role", *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def expect(self, tag: str) -> str:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            head, _, rest = line.strip().partition(" ")
            if head == tag:
                return rest
        raise RuntimeError(f"role ended before {tag}")

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def end(self) -> None:
        try:
            self.send("END")
            assert self.p.stdin is not None
            self.p.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def summary(ns: list[int]) -> dict[str, float]:
    us = sorted(n / 1000 for n in ns)
    q = statistics.quantiles(us, n=100)
    return {"count": len(us), "p50_us": statistics.median(us), "p99_us": q[98]}


def rust_caller(bench: str, hub: str, calls: int) -> dict[str, float]:
    c = Role(bench, "w2-caller", "--system", "netsvc", "--addr", hub, "--calls", str(calls),
             "--warmup-ms", "500", "--max-secs", "20", "--inflight-secs", "1")
    c.expect("READY")
    c.send("GO")
    result = json.loads(c.expect("RESULT"))
    c.end()
    return {k: result["sequential"][k] for k in ("count", "p50_us", "p99_us")}


async def aio_caller(calls: int) -> dict[str, float]:
    from netsvc import aio
    ep = aio.endpoint("bench", timeout=10)
    for i in range(200):
        await ep.call("echo", payload(i | WARMUP))
    ns = []
    for i in range(calls):
        t = time.perf_counter_ns()
        r = await ep.call("echo", payload(i))
        ns.append(time.perf_counter_ns() - t)
        assert len(r) == SIZE
    return summary(ns)


def blocking_caller(calls: int) -> dict[str, float]:
    from netsvc import client
    echo = client.RemoteService("bench", timeout=10)
    for i in range(200):
        echo.echo(payload(i | WARMUP))
    ns = []
    for i in range(calls):
        t = time.perf_counter_ns()
        echo.echo(payload(i))
        ns.append(time.perf_counter_ns() - t)
    return summary(ns)


def classic_caller(calls: int) -> dict[str, float]:
    import netsvc
    ns: list[int] = []

    class Caller(netsvc.Service):
        def __init__(self) -> None:
            netsvc.Service.__init__(self)
            self.i = -200
            self.t = 0
            self.next()

        def next(self) -> None:
            self.t = time.perf_counter_ns()
            seq = (self.i + 200) | WARMUP if self.i < 0 else self.i
            cid = self.sendRequest("bench", "echo", payload(seq))
            self.processResponse(self.done, cid)

        def done(self, result: bytes) -> None:
            if self.i >= 0:
                ns.append(time.perf_counter_ns() - self.t)
            self.i += 1
            if self.i == calls:
                netsvc.Dispatcher().stop()
            else:
                self.next()
    c = Caller()
    netsvc.Dispatcher().run()
    c.destroyAgent()
    return summary(ns)


def python_service_aio(ready: threading.Event, stop: threading.Event) -> None:
    from netsvc import aio

    async def main() -> None:
        svc = aio.Service("bench")

        @svc.export
        async def echo(p: bytes) -> bytes:
            return p
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        svc.withdraw()
    asyncio.run(main())


def python_service_classic_run() -> None:
    import netsvc

    class Echo(netsvc.Service):
        def __init__(self) -> None:
            netsvc.Service.__init__(self, "bench")
            self.exportMethod(self.echo)

        def echo(self, p: bytes) -> bytes:
            return p
    e = Echo()
    netsvc.Dispatcher().run()
    e.destroyAgent()


def wait_name(name: str, present: bool) -> None:
    import netsvc
    deadline = time.monotonic() + 10
    while bool(netsvc.Registry().lookupServiceName(name)) != present:
        if time.monotonic() > deadline:
            raise RuntimeError(f"service {name} did not {'appear' if present else 'go'}")
        time.sleep(0.01)


def reports_rust_to_python(bench: str, hub: str, reports: int, api: str) -> dict[str, float]:
    pub = Role(bench, "w1-pub", "--system", "netsvc", "--addr", hub, "--size", "16",
               "--subs", "1", "--messages", str(reports), "--warmup-ms", "300",
               "--max-secs", "20")
    got = {"n": 0, "first": 0, "last": 0}
    done = threading.Event()
    subscribed = threading.Event()

    def count(content: bytes) -> None:
        seq = struct.unpack_from("<Q", content)[0]
        if seq & WARMUP:
            return
        now = time.perf_counter_ns()
        if got["n"] == 0:
            got["first"] = now
        got["n"] += 1
        got["last"] = now
        if got["n"] >= reports:
            done.set()

    if api == "aio":
        def sub() -> None:
            from netsvc import aio

            async def main() -> None:
                mon = aio.Service("").monitor("bench-pub", "bench")
                subscribed.set()
                while not done.is_set():
                    try:
                        # Silence for 5 s once measuring: the rest was coalesced away.
                        r = await asyncio.wait_for(mon.__anext__(), 5 if got["n"] else 60)
                    except (TimeoutError, StopAsyncIteration):
                        break
                    count(r.content)
                got["missed"] = mon.missed
            asyncio.run(main())
        t = threading.Thread(target=sub, daemon=True)
        t.start()
        subscribed.wait()
        pub.expect("READY")
        pub.send("GO")
        pub.expect("WARM")
        pub.send("MEASURE")
        result = json.loads(pub.expect("RESULT"))
        done.wait(30)
        t.join(30)
    else:
        import netsvc

        class Sub(netsvc.Service):
            def __init__(self) -> None:
                netsvc.Service.__init__(self)
                self.monitorReports(self.report, "bench-pub", "bench")
                self.seen = -1
                self.startTimer(self.check, 5)

            def check(self) -> None:
                # Silence for 5 s once measuring: the rest was coalesced away.
                if got["n"] and got["n"] == self.seen:
                    netsvc.Dispatcher().stop()
                self.seen = got["n"]
                self.startTimer(self.check, 5)

            def report(self, content: bytes) -> None:
                count(content)
                if done.is_set():
                    netsvc.Dispatcher().stop()
        s = Sub()

        def drive() -> None:
            pub.expect("READY")
            pub.send("GO")
            pub.expect("WARM")
            pub.send("MEASURE")
            drive.result = json.loads(pub.expect("RESULT"))  # type: ignore[attr-defined]
        d = threading.Thread(target=drive, daemon=True)
        d.start()
        netsvc.Dispatcher().run()
        d.join(30)
        s.destroyAgent()
        result = drive.result  # type: ignore[attr-defined]
    pub.end()
    secs = (got["last"] - got["first"]) / 1e9
    return {"sent": result["sent"], "received": got["n"],
            "reports_per_s": got["n"] / secs if secs > 0 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=str(REPO / "target" / "release" / "netsvc-bench"))
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--reports", type=int, default=200_000)
    args = ap.parse_args()
    from netsvc import client

    hub_role = Role(args.bench, "netsvc-hub", "--listen", "127.0.0.1:0")
    hub = hub_role.expect("READY")
    client.connect(hub)
    rows: list[tuple[str, dict[str, float]]] = []

    server = Role(args.bench, "w2-server", "--system", "netsvc", "--addr", hub)
    server.expect("READY")
    wait_name("bench", True)
    rows.append(("Rust caller -> Rust service", rust_caller(args.bench, hub, args.calls)))
    rows.append(("Python netsvc.aio caller -> Rust service", asyncio.run(aio_caller(args.calls))))
    rows.append(("Python netsvc.client (blocking) -> Rust service", blocking_caller(args.calls)))
    rows.append(("Python original API caller -> Rust service", classic_caller(args.calls)))
    server.end()
    wait_name("bench", False)

    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=python_service_aio, args=(ready, stop), daemon=True)
    t.start()
    ready.wait()
    rows.append(("Rust caller -> Python netsvc.aio service", rust_caller(args.bench, hub, args.calls)))
    stop.set()
    t.join()
    wait_name("bench", False)

    # The original API's service runs on the dispatcher, which needs the main thread.
    import netsvc
    caller_result: dict[str, dict[str, float]] = {}

    def call_it() -> None:
        wait_name("bench", True)
        caller_result["r"] = rust_caller(args.bench, hub, args.calls)
        netsvc.Dispatcher().schedule(netsvc.Dispatcher().stop)
    c = threading.Thread(target=call_it, daemon=True)
    c.start()
    python_service_classic_run()
    c.join()
    rows.append(("Rust caller -> Python original-API service", caller_result["r"]))

    report_rows = [
        ("Rust publisher -> Python netsvc.aio subscriber",
         reports_rust_to_python(args.bench, hub, args.reports, "aio")),
        ("Rust publisher -> Python original-API subscriber",
         reports_rust_to_python(args.bench, hub, args.reports, "classic")),
    ]
    hub_role.end()

    print(f"\nSequential request/reply, {SIZE}-byte payload, {args.calls} calls each, one hub:\n")
    print("| caller -> service | calls | p50 µs | p99 µs |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {int(r['count'])} | {r['p50_us']:.1f} | {r['p99_us']:.1f} |")
    print("\nReports (16-byte payload, paced publisher), one subscriber:\n")
    print("| publisher -> subscriber | sent | received | reports/s |")
    print("|---|---|---|---|")
    for name, r in report_rows:
        print(f"| {name} | {int(r['sent'])} | {int(r['received'])} | {r['reports_per_s']:,.0f} |")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
