"""Real processes over the real hub: Python and Rust (the netsvc CLI) as peers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from conftest import EXAMPLES, Procs, free_port, netsvc_bin


def port_of(address: str) -> str:
    return address.rsplit(":", 1)[1]


def wait_service(procs: Procs, hub: str, name: str) -> None:
    """Waits (on the registry's own events) until a service of that name is visible."""
    watch = procs.start([netsvc_bin(), "services", "--connect", hub, "--watch", "--json", name])
    watch.wait_line(f'"name":"{name}"')
    watch.p.kill()


def call(procs: Procs, hub: str, *args: str) -> subprocess.CompletedProcess[str]:
    return procs.cli("call", "--connect", hub, *args)


def test_seed_program_called_from_rust_cli(procs: Procs, hub: str) -> None:
    procs.python(EXAMPLES / "echo_service.py", env={"NETSVC_PORT": port_of(hub)})
    wait_service(procs, hub, "echo")
    r = call(procs, hub, "echo", "echo", "1", "two", '{"a":[true,null]}', "2.5")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [1, "two", {"a": [True, None]}, 2.5]
    r = call(procs, hub, "echo", "nosuch")
    assert r.returncode == 1
    assert json.loads(r.stderr.strip().splitlines()[-1])["error"] == 55


def test_python_exchange_server_relays_rust_and_python(procs: Procs) -> None:
    """The seed's server program as the hub; the CLI calls a Python service through it."""
    port = str(free_port())
    server = procs.python(EXAMPLES / "exchange_server.py", env={"NETSVC_PORT": port})
    hub = f"127.0.0.1:{port}"
    procs.python(EXAMPLES / "echo_service.py", env={"NETSVC_PORT": port})
    wait_service(procs, hub, "echo")
    r = call(procs, hub, "echo", "echo", "via python hub")
    assert r.returncode == 0, (r.stderr, server.err)
    assert json.loads(r.stdout) == ["via python hub"]


def test_rust_service_called_from_python_classic(procs: Procs, hub: str) -> None:
    procs.start([netsvc_bin(), "demo", "--connect", hub])
    out = procs.python(EXAMPLES / "client.py", "echo", "hi", "there",
                       env={"NETSVC_PORT": port_of(hub)})
    assert out.p.wait(30) == 0, out.err
    assert out.out == ["result ['hi', 'there']"]


def test_python_exception_is_failure_57_and_service_keeps_serving(procs: Procs, hub: str) -> None:
    svc = procs.python(EXAMPLES / "aio_service.py", hub)
    svc.wait_line("ready")
    r = call(procs, hub, "pyaio", "crash")
    assert r.returncode == 1
    f = json.loads(r.stderr.strip().splitlines()[-1])
    assert (f["error"], f["origin"]) == (57, "netsvc")
    assert "Traceback" in f["details"] and "ZeroDivisionError" in f["details"]
    r = call(procs, hub, "pyaio", "fail")
    f = json.loads(r.stderr.strip().splitlines()[-1])
    assert f == {"error": 7, "description": "Out of paper", "origin": "printer", "details": "tray 2"}
    r = call(procs, hub, "pyaio", "add", "2", "3")
    assert (r.returncode, r.stdout.strip()) == (0, "5")
    r = call(procs, hub, "pyaio", "add", "2")
    f = json.loads(r.stderr.strip().splitlines()[-1])
    assert (f["error"], f["details"]) == (56, "Expected 2 arguments, received 1.")


def test_timeout_47_and_withdrawal_57_seen_from_python(procs: Procs, hub: str) -> None:
    svc = procs.python(EXAMPLES / "aio_service.py", hub)
    svc.wait_line("ready")
    script = f"""
import asyncio, sys
from netsvc import aio
async def main():
    await aio.Exchange.client().connect({hub!r})
    ep = aio.endpoint("pyaio")
    try:
        await ep.call("slow", 30, timeout=0.3)
    except aio.RequestTimeout as f:
        print("timeout", f.error, f.kind, flush=True)
    call = asyncio.ensure_future(ep.call("slow", 31, timeout=None))
    print("calling", flush=True)
    try:
        await call
    except aio.Failure as f:
        print("failure", f.error, f.kind, flush=True)
asyncio.run(main())
"""
    caller = procs.start([sys.executable, "-X", "faulthandler", "-c", script])
    caller.wait_line("timeout 47 timeout")
    caller.wait_line("calling")
    svc.wait_line("slow 31")  # the request has reached the service
    svc.p.kill()  # the service's process dies while the request is under way
    caller.wait_line("failure 57 withdrawn")
    assert caller.p.wait(20) == 0, caller.err


def test_reports_with_lifetime_reach_late_subscribers_both_ways(procs: Procs, hub: str) -> None:
    # Python publisher, Rust (CLI) and Python late subscribers.
    pub = procs.python(EXAMPLES / "publisher.py", "-1", env={"NETSVC_PORT": port_of(hub)})
    pub.wait_line("publishing")
    wait_service(procs, hub, "news")
    r = procs.cli("monitor", "--connect", hub, "--count", "1", "news", "news.cached")
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.strip().splitlines()[0])
    assert (line["subject"], line["value"]) == ("news.cached", {"headline": "cached"})
    sub = procs.python(EXAMPLES / "subscriber.py", "news", "news.*", "2",
                       env={"NETSVC_PORT": port_of(hub)})
    sub.wait_line("report news news.cached {'headline': 'cached'}")
    sub.wait_line("report news news.live")
    assert sub.p.wait(20) == 0
    # Rust (CLI) publisher with a lifetime, Python late subscriber (asyncio).
    rpub = procs.start([netsvc_bin(), "publish", "--connect", hub, "--service", "rnews",
                        "--lifetime", "30", "--settle", "0", "weather", '{"sky":"rain"}'])
    rpub.wait_line("published")
    script = f"""
import asyncio
from netsvc import aio
async def main():
    await aio.Exchange.client().connect({hub!r})
    async for report in aio.Service("").monitor("rnews", "*"):
        print(report.service, report.subject, report.content, flush=True)
        return
asyncio.run(main())
"""
    late = procs.start([sys.executable, "-c", script])
    late.wait_line("rnews weather {'sky': 'rain'}")
    assert late.p.wait(20) == 0


def test_lifetime_zero_is_not_cached(procs: Procs, hub: str) -> None:
    pub = procs.python(EXAMPLES / "publisher.py", "0", env={"NETSVC_PORT": port_of(hub)})
    pub.wait_line("publishing")
    wait_service(procs, hub, "news")
    # A late subscriber sees live reports only: the first it gets is news.live.
    r = procs.cli("monitor", "--connect", hub, "--count", "1", "news", "news.*")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[0])["subject"] == "news.live"


def test_client_before_hub_and_hub_restart(procs: Procs) -> None:
    port = free_port()
    hub = f"127.0.0.1:{port}"
    svc = procs.python(EXAMPLES / "echo_service.py", env={"NETSVC_PORT": str(port)})
    h1, _ = procs.hub(port)
    wait_service(procs, hub, "echo")
    assert json.loads(call(procs, hub, "echo", "echo", "one").stdout) == ["one"]
    h1.p.kill()
    h1.p.wait()
    assert svc.p.poll() is None
    procs.hub(port)
    wait_service(procs, hub, "echo")  # the Python client relinked and re-announced on its own
    r = call(procs, hub, "echo", "echo", "two")
    assert (r.returncode, json.loads(r.stdout)) == (0, ["two"]), r.stderr


def test_ctrl_c_stops_run_quickly(procs: Procs, hub: str) -> None:
    svc = procs.python(EXAMPLES / "echo_service.py", env={"NETSVC_PORT": port_of(hub)})
    wait_service(procs, hub, "echo")
    start = time.monotonic()
    svc.signal(signal.SIGINT)
    rc = svc.p.wait(10)
    assert time.monotonic() - start < 3.0
    assert rc != 0 and any("KeyboardInterrupt" in line for line in svc.err)


def test_blocking_method_delays_but_loses_nothing(procs: Procs, hub: str) -> None:
    script = f"""
import time, netsvc
class Slow(netsvc.Service):
    def __init__(self):
        netsvc.Service.__init__(self, "slowpy")
        self.exportMethod(self.nap)
    def nap(self, n):
        time.sleep(0.2)   # blocks the dispatcher: everything else waits in the queue
        return n
ex = netsvc.Exchange(netsvc.EXCHANGE_CLIENT)
ex.connect("127.0.0.1", {port_of(hub)}, 1)
s = Slow()
netsvc.Dispatcher().run()
"""
    procs.start([sys.executable, "-c", script])
    wait_service(procs, hub, "slowpy")
    calls = [subprocess.Popen([netsvc_bin(), "call", "--connect", hub, "slowpy", "nap", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(6)]
    results = []
    for c in calls:
        with c:
            results.append(c.communicate(timeout=30))
    assert [json.loads(out) for out, _ in results] == list(range(6)), results


def test_cancelled_call_ends_at_once_and_the_service_goes_on(procs: Procs, hub: str) -> None:
    """Cancelling drops the Rust request (which sends CANCEL toward the service). The core
    does not stop a handler on CANCEL yet, so the remote coroutine is not cancelled: the
    caller is released at once and the service keeps serving."""
    svc = procs.python(EXAMPLES / "aio_service.py", hub)
    svc.wait_line("ready")
    script = f"""
import asyncio, sys
from netsvc import aio
async def main():
    await aio.Exchange.client().connect({hub!r})
    call = asyncio.ensure_future(aio.endpoint("pyaio").call("slow", 33))
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    call.cancel()
    try:
        await call
    except asyncio.CancelledError:
        print("caller cancelled", flush=True)
    print("then", await aio.endpoint("pyaio").call("add", 1, 2), flush=True)
asyncio.run(main())
"""
    caller = procs.start([sys.executable, "-c", script])
    svc.wait_line("slow 33")
    caller.send("go")
    caller.wait_line("caller cancelled")
    caller.wait_line("then 3")
    assert caller.p.wait(20) == 0


def test_handle_connection_active_then_inactive(procs: Procs) -> None:
    h, hub = procs.hub()
    script = f"""
import netsvc
class Ex(netsvc.Exchange):
    def handleConnection(self, a):
        print("connection", a.state(), a.group() == "", a.remoteProcess() != "", flush=True)
ex = Ex(netsvc.EXCHANGE_CLIENT)
ex.connect("127.0.0.1", {port_of(hub)}, 0.2)
netsvc.Dispatcher().run()
"""
    client = procs.start([sys.executable, "-c", script])
    client.wait_line(f"connection {0} True True")  # CONNECTION_ACTIVE
    h.p.kill()
    client.wait_line(f"connection {1} True True")  # CONNECTION_INACTIVE


def test_authorise_refuses_a_client(procs: Procs) -> None:
    port = free_port()
    script = f"""
import netsvc
class Guarded(netsvc.Exchange):
    def authorise(self, host):
        print("authorise", host, flush=True)
        return host != "127.0.0.1"
ex = Guarded(netsvc.EXCHANGE_SERVER)
ex.listen({port}, "127.0.0.1")
print("listening", flush=True)
netsvc.Dispatcher().run()
"""
    server = procs.start([sys.executable, "-c", script])
    server.wait_line("listening")
    r = procs.cli("services", "--connect", f"127.0.0.1:{port}", "--wait", "5")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "not authorised" in r.stderr
    server.wait_line("authorise 127.0.0.1")


def test_blocking_client_calls_a_rust_service(procs: Procs, hub: str) -> None:
    procs.start([netsvc_bin(), "demo", "--connect", hub])
    wait_service(procs, hub, "echo")
    script = f"""
from netsvc import client
client.connect({hub!r})
echo = client.RemoteService("echo", timeout=5)
print("result", echo.echo("blocking"), flush=True)
print("located", client.Registry().locateService("echo", "demo").serviceName(), flush=True)
try:
    echo.fail(7, "out of paper")
except client.ServiceFailure as f:
    print("failure", f.error, f.origin, f.details, flush=True)
"""
    p = procs.start([sys.executable, "-c", script])
    assert p.p.wait(30) == 0, p.err
    assert p.out == ["result blocking", "located echo", "failure 7 demo out of paper"]
