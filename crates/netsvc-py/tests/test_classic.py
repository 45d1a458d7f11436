"""The original API in one process: dispatcher, jobs, timers, requests, failures, reports,
registry. Every test ends by stopping the dispatcher from a callback; a guard timer makes a
test that never gets there fail instead of hanging."""

from __future__ import annotations

import gc
from typing import Any, Callable, Iterator

import pytest

import netsvc

D = netsvc.Dispatcher()


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    for service in list(D._services.values()):
        service.destroyAgent()
    D.reset()
    gc.collect()


class Guard(netsvc.Agent):
    """Stops the dispatcher after `limit` seconds, recording that it had to."""

    def __init__(self, limit: float = 10.0) -> None:
        super().__init__()
        self.fired = False
        self.startTimer(self.fire, limit)

    def fire(self) -> None:
        self.fired = True
        D.stop()


def run(limit: float = 10.0) -> None:
    guard = Guard(limit)
    D.run()
    guard.cancelAllTimers()
    assert not guard.fired, "the dispatcher had to be stopped by the guard timer"


class Echo(netsvc.Service):
    def __init__(self, name: str = "echo") -> None:
        netsvc.Service.__init__(self, name)
        self.exportMethod(self.echo)
        self.exportMethod(self.opt)
        self.exportMethod(self.boom)
        self.exportMethod(self.abort)
        self.exportMethod(self.park)
        self.exportMethod(self.unencodable)
        self.parked: dict[str, str] = {}

    def echo(self, *args: Any) -> Any:
        return list(args)

    def opt(self, a: Any, b: Any = 1) -> Any:
        return [a, b]

    def boom(self) -> None:
        raise KeyError("no such thing")

    def abort(self) -> None:
        self.abortResponse(1, "Programming Error", "db", "table missing")

    def park(self, tag: str = "") -> None:
        self.parked[tag] = self.suspendResponse(lambda: "resumed")
        self.on_park()

    def on_park(self) -> None:
        pass

    def unencodable(self) -> Any:
        return object()


class Caller(netsvc.Service):
    """Sends requests and records outcomes; stops the dispatcher after `expect` of them."""

    def __init__(self, expect: int) -> None:
        netsvc.Service.__init__(self, "")
        self.expect = expect
        self.outcomes: dict[str, Any] = {}

    def send(self, target: Any, method: str, *args: Any, timeout: float | None = None) -> str:
        cid = self.sendRequest(target, method, *args)
        self.processResponse(lambda i, r: self.record(i, ("ok", r)), cid)
        self.processFailure(lambda i, e, d, o, det: self.record(i, ("fail", e, d, o, det)),
                            cid, timeout)
        return cid

    def record(self, cid: str, outcome: Any) -> None:
        self.outcomes[cid] = outcome
        if len(self.outcomes) == self.expect:
            D.stop()


def test_jobs_run_priority_standard_idle_and_run_returns_when_empty() -> None:
    order: list[int] = []
    for t in (netsvc.IDLE_JOB, netsvc.STANDARD_JOB, netsvc.PRIORITY_JOB):
        D.schedule(lambda t=t: order.append(t), t)
    D.run()  # returns on its own: nothing is left
    assert order == [netsvc.PRIORITY_JOB, netsvc.STANDARD_JOB, netsvc.IDLE_JOB]


def test_cancelled_job_never_runs_until_reset() -> None:
    ran: list[str] = []
    job = netsvc.Job(ran.append, ("x",))
    job.schedule(netsvc.STANDARD_JOB)
    job.cancel()
    assert not job
    D.run()
    assert ran == []
    job.reset()
    job.schedule(netsvc.STANDARD_JOB, ("y",))
    D.run()
    assert ran == ["y"]


def test_timer_with_pending_name_replaces_it() -> None:
    fired: list[str] = []
    agent = netsvc.Agent()
    agent.startTimer(lambda: fired.append("old"), 0.05, "t")
    name = agent.startTimer(lambda n: fired.append(n), 0.1, "t")
    assert name == "t" and agent.timerPending("t")
    D.run()
    assert fired == ["t"]


def test_request_outcomes() -> None:
    Echo()
    caller = Caller(7)
    ok = caller.send("echo", "echo", 1, (2, 3), {"k": None})
    opt = caller.send("echo", "opt", 1, 2, 3)
    boom = caller.send("echo", "boom")
    abort = caller.send("echo", "abort")
    nosuch = caller.send("echo", "nosuch")
    few = caller.send("echo", "opt")
    bad = caller.send("echo", "unencodable")
    run()
    o = caller.outcomes
    assert o[ok] == ("ok", [1, [2, 3], {"k": None}])
    assert o[opt] == ("fail", 56, "Parameters Incorrect", "netsvc", "Expected 1-2 arguments, received 3.")
    assert o[boom][:4] == ("fail", 57, "Application Error", "netsvc")
    assert "Traceback" in o[boom][4] and "KeyError: 'no such thing'" in o[boom][4]
    assert o[abort] == ("fail", 1, "Programming Error", "db", "table missing")
    assert o[nosuch][:2] == ("fail", 55)
    assert o[few][1:] == (56, "Parameters Incorrect", "netsvc", "Expected 1-2 arguments, received 0.")
    assert o[bad][:2] == ("fail", 52)


def test_suspend_resume_and_timeout_47_and_withdrawal_57() -> None:
    echo = Echo()
    caller = Caller(2)
    resumed = caller.send("echo", "park", "r")
    timed_out = caller.send("echo", "park", "t", timeout=0.2)

    def maybe_resume() -> None:
        # Once the second request has timed out, resume the first (both are parked).
        if "r" in echo.parked and timed_out in caller.outcomes:
            echo.resumeResponse(echo.parked.pop("r"))
    echo.on_park = maybe_resume  # type: ignore[method-assign]
    record = caller.record
    caller.record = lambda cid, outcome: (record(cid, outcome), maybe_resume())  # type: ignore[method-assign]
    run()
    assert caller.outcomes[resumed] == ("ok", "resumed")
    assert caller.outcomes[timed_out][1:3] == (47, "Request Timeout")
    # Withdrawn before it responds: 57 with the original's words.
    caller.outcomes.clear()
    caller.expect = 1
    caller.record = record  # type: ignore[method-assign]
    gone = caller.send("echo", "park", "g")
    echo.on_park = echo.destroyAgent  # type: ignore[method-assign]
    run()
    kind, error, _, origin, details = caller.outcomes[gone]
    assert (kind, error, origin) == ("fail", 57, "netsvc")
    assert details.startswith(netsvc._errors.WITHDRAWN_DETAILS)


def test_callbacks_must_name_the_most_recent_request() -> None:
    Echo()
    caller = Caller(1)
    first = caller.sendRequest("echo", "echo")
    caller.sendRequest("echo", "echo")
    with pytest.raises(RuntimeError):
        caller.processResponse(lambda r: None, first)


def test_missing_endpoint_is_false_and_raises_46() -> None:
    caller = Caller(1)
    ep = caller.serviceEndPoint("missing")
    assert not ep
    with pytest.raises(netsvc.ServiceUnavailable) as e:
        ep.anything()
    assert e.value.error == 46


def test_endpoint_attribute_chain_and_conversation_id() -> None:
    class Dotted(netsvc.Service):
        def __init__(self) -> None:
            netsvc.Service.__init__(self, "dotted")
            self.exportMethod(self.m, "a.b")
            self.seen: list[Any] = []

        def m(self) -> str:
            req = self.currentRequest()
            self.seen.append((req.methodName(), req.conversationId() == self.conversationId()))
            return "dotted"
    svc = Dotted()
    caller = Caller(1)
    cid = caller.serviceEndPoint("dotted").a.b()
    caller.processResponse(lambda i, r: caller.record(i, r), cid)
    run()
    assert caller.outcomes == {cid: "dotted"}
    assert svc.seen == [("a.b", True)]


def test_dict_with_non_str_key_cannot_be_sent() -> None:
    Echo()
    caller = Caller(1)
    with pytest.raises(TypeError, match="str keys"):
        caller.sendRequest("echo", "echo", {1: 2})


class Reader(netsvc.Service):
    def __init__(self, target: str, patterns: list[str], stop_on: str) -> None:
        netsvc.Service.__init__(self, "")
        self.got: list[tuple[str, str, Any]] = []
        self.stop_on = stop_on
        for p in patterns:
            self.monitorReports(self.report, target, p)

    def report(self, service: str, subject: str, content: Any) -> None:
        self.got.append((service, subject, content))
        if subject == self.stop_on:
            D.stop()


def test_report_lifetimes_and_late_subscribers() -> None:
    pub = netsvc.Service("news")
    pub.publishReport("kept", "forever", -1)
    pub.publishReport("timed", "for a minute", 60)
    pub.publishReport("dropped", "now only", 0)
    pub.publishReport("marker", "end", -1)
    late = Reader("news", ["*"], "marker")
    run()
    assert sorted(late.got) == [("news", "kept", "forever"), ("news", "marker", "end"),
                                ("news", "timed", "for a minute")]
    # Lifetime 0 clears the cached report of that subject.
    pub.publishReport("kept", "gone", 0)
    later = Reader("news", ["*"], "marker")
    run()
    assert sorted(s for _, s, _ in later.got) == ["marker", "timed"]


def test_two_matching_patterns_deliver_twice_and_match_subject() -> None:
    class Twice(Reader):
        def report(self, service: str, subject: str, content: Any) -> None:
            self.got.append((service, subject, content))
            if [s for _, s, _ in self.got].count("system.marker") == 2:
                D.stop()
    pub = netsvc.Service("sys")
    reader = Twice("sys", ["*", "system.*"], "")
    # In one process the subscriptions are in place at once: publish live reports.
    pub.publishReport("system.time", 1)
    pub.publishReport("system.marker", 0)
    run()
    assert [s for _, s, _ in reader.got].count("system.time") == 2
    assert netsvc.matchSubject("system.*", "system.a.b")
    assert not netsvc.matchSubject("system.*", "system")
    assert netsvc.matchSubject("a?c", "abc") and not netsvc.matchSubject("a?c", "ac")


def test_registry_announcements() -> None:
    seen: list[tuple[str, Any, int, int]] = []

    class Watcher(netsvc.Monitor):
        def __init__(self) -> None:
            netsvc.Monitor.__init__(self)
            self.subscribeRegistry(self.announce)
            self.subscribeServiceName(self.named, "alarm-monitor")
            self.subscribeServiceGroup(self.grouped, "alarms")

        def announce(self, binding: Any, group: Any, status: int) -> None:
            if binding.serviceName() == "alarm-monitor":
                seen.append(("registry", group, status, binding.serviceLocation()))
                self.maybe_stop()

        def maybe_stop(self) -> None:
            if ("registry", None, 1, 0) in seen and ("group", "alarms", 1, 0) in seen:
                D.stop()

        def named(self, binding: Any, status: int) -> None:
            seen.append(("name", None, status, binding.serviceLocation()))

        def grouped(self, binding: Any, group: str, status: int) -> None:
            seen.append(("group", group, status, binding.serviceLocation()))
            self.maybe_stop()
    w = Watcher()
    svc = netsvc.Service("alarm-monitor")
    svc.joinGroup("alarms")
    svc.startTimer(svc.destroyAgent, 0.2)
    run()
    local = netsvc.SERVICE_LOCAL
    assert ("registry", None, netsvc.SERVICE_AVAILABLE, local) in seen
    assert ("name", None, netsvc.SERVICE_AVAILABLE, local) in seen
    assert ("group", "alarms", netsvc.SERVICE_AVAILABLE, local) in seen
    registry = [s for s in seen if s[0] == "registry"]
    # Leaving the group is told before the withdrawal.
    assert registry[-2:] == [("registry", "alarms", 1, local), ("registry", None, 1, local)]
    assert ("group", "alarms", netsvc.SERVICE_WITHDRAWN, local) in seen
    assert w.lookupServiceName("alarm-monitor") == []


def test_handle_subscription_and_send_report() -> None:
    class Publisher(netsvc.Service):
        def __init__(self) -> None:
            netsvc.Service.__init__(self, "pub")
            self.subs: list[tuple[str, int]] = []

        def handleSubscription(self, sub: Any) -> None:
            self.subs.append((sub.subject(), sub.status()))
            if sub.status() == netsvc.SUBSCRIPTION_REQUESTED:
                self.sendReport(sub.subscriber(), "private.hello", "just you")
    pub = Publisher()
    reader = Reader("pub", ["private.*"], "private.hello")
    run()
    assert pub.subs == [("private.*", netsvc.SUBSCRIPTION_REQUESTED)]
    assert reader.got == [("pub", "private.hello", "just you")]
    assert pub._core.cached_subjects() == []  # sendReport is never cached


def test_local_service() -> None:
    Echo("database")
    assert netsvc.LocalService("database")
    assert netsvc.LocalService("database").echo("q") == ["q"]
    assert not netsvc.LocalService("nosuch")
    with pytest.raises(netsvc.ServiceUnavailable):
        netsvc.LocalService("nosuch").echo()
    with pytest.raises(netsvc.ServiceFailure) as e:
        netsvc.LocalService("database").nosuch()
    assert e.value.error == 55


def test_exception_in_a_callback_is_logged_and_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []
    D.schedule(lambda: 1 / 0)
    D.schedule(lambda: ran.append(1))
    D.schedule(D.stop)
    run()
    assert ran == [1]
    assert "exception in a netsvc callback" in caplog.text


def test_shutdown_notifies_then_stops() -> None:
    got: list[int] = []
    agent = netsvc.Agent()
    agent.subscribeShutdown(got.append)
    D._shutting_down = False
    D.shutdown(0.1)
    run()
    assert got == [netsvc.SHUTDOWN_PENDING, netsvc.SHUTDOWN_ARRIVED]
    D._shutting_down = False
