"""The asyncio API in one process."""

from __future__ import annotations

import asyncio

import pytest

from netsvc import aio

pytestmark = pytest.mark.asyncio


async def test_async_methods_and_failure_codes() -> None:
    async with aio.Runtime() as rt:
        svc = rt.service("calc")

        @svc.export
        async def add(a: int, b: int) -> int:
            await asyncio.sleep(0)
            return a + b

        @svc.export(name="div")
        def divide(a: float, b: float) -> float:
            return a / b

        @svc.export
        async def refuse() -> None:
            raise aio.Failure(7, "Out of paper", "printer", "tray 2")

        ep = aio.endpoint("calc")
        assert ep.available
        assert await ep.call("add", 2, 3) == 5
        assert await ep.add(2.5, 0.5) == 3.0
        with pytest.raises(aio.Failure) as e:
            await ep.div(1, 0)
        assert (e.value.error, e.value.kind) == (57, "method-failed")
        assert "ZeroDivisionError" in e.value.details
        with pytest.raises(aio.Failure) as e:
            await ep.refuse()
        assert (e.value.error, e.value.description, e.value.origin, e.value.details,
                e.value.kind) == (7, "Out of paper", "printer", "tray 2", "application")
        with pytest.raises(aio.Failure) as e:
            await ep.add(1)
        assert (e.value.error, e.value.kind) == (56, "bad-arguments")
        with pytest.raises(aio.Failure) as e:
            await ep.nosuch()
        assert (e.value.error, e.value.kind) == (55, "method-unavailable")
        with pytest.raises(aio.ServiceUnavailable) as e2:
            await aio.endpoint("missing").call("x")
        assert (e2.value.error, e2.value.kind) == (46, "service-unavailable")


async def test_timeout_and_withdrawal() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()
    svc = aio.Service("sleeper")

    @svc.export
    async def hang() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(aio.RequestTimeout) as e:
        await aio.endpoint("sleeper").call("hang", timeout=0.1)
    assert (e.value.error, e.value.kind) == (47, "timeout")
    started.clear()
    call = asyncio.ensure_future(aio.endpoint("sleeper").call("hang", timeout=None))
    await started.wait()
    svc.withdraw()
    with pytest.raises(aio.Failure) as e:
        await call
    assert (e.value.error, e.value.kind) == (57, "withdrawn")
    # The withdrawn service's running method is cancelled too.
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_cancelling_a_call_raises_cancelled_error() -> None:
    started = asyncio.Event()
    svc = aio.Service("slowpoke")

    @svc.export
    async def hang() -> None:
        started.set()
        await asyncio.sleep(60)

    call = asyncio.ensure_future(aio.endpoint("slowpoke").call("hang"))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    svc.withdraw()


async def test_reports_cached_then_live_and_publisher_events() -> None:
    async with aio.Runtime() as rt:
        pub = rt.service("clock")
        pub.publish("system.boot", "cached", -1)
        reader = rt.service("")
        monitor = reader.monitor("clock", "system.*")
        events = monitor.events()
        first = await events.__anext__()
        assert isinstance(first, aio.PublisherAvailable)
        assert first.publisher.serviceName() == "clock"
        cached = await events.__anext__()
        assert (cached.subject, cached.content, cached.pattern) == ("system.boot", "cached", "system.*")
        assert pub.publish("system.time", {"h": 12}) == 1
        assert pub.publish("other", 1) == 0
        live = await events.__anext__()
        assert (live.subject, live.content, live.service) == ("system.time", {"h": 12}, "clock")
        pub.withdraw()
        gone = await events.__anext__()
        assert isinstance(gone, aio.PublisherWithdrawn)


async def test_async_for_over_reports_and_registry_watch() -> None:
    watch = aio.watch_name("watched")
    svc = aio.Service("watched")
    ann = await watch.__anext__()
    assert (ann.status, ann.binding.serviceName()) == ("available", "watched")
    svc.join_group("g")  # never told to a name watch
    svc.withdraw()
    ann = await watch.__anext__()
    assert ann.status == "withdrawn"
    watch.close()

    pub = aio.Service("feed")
    reader = aio.Service("")
    got = []
    for i in range(3):
        pub.publish(f"n.{i}", i, -1)
    async for report in reader.monitor("feed", "n.*"):
        got.append((report.subject, report.content))
        if len(got) == 3:
            break
    assert sorted(got) == [("n.0", 0), ("n.1", 1), ("n.2", 2)]
    pub.withdraw()
    reader.withdraw()


async def test_subscriptions_seen_by_publisher() -> None:
    pub = aio.Service("pubsubs")
    subs = pub.subscriptions()
    reader = aio.Service("")
    monitor = reader.monitor("pubsubs", "a.*")
    sub = await subs.__anext__()
    assert (sub.pattern, sub.requested, sub.subscriber.serviceAddress()) == \
        ("a.*", True, reader.address)
    monitor.close()
    sub = await subs.__anext__()
    assert (sub.pattern, sub.requested) == ("a.*", False)
    pub.withdraw()
    reader.withdraw()


async def test_exchange_in_process_listen_connect() -> None:
    server = aio.Exchange.server("inproc")
    address = await server.listen("127.0.0.1:0")
    assert address.startswith("127.0.0.1:")
    client = aio.Exchange.client("other")
    with pytest.raises(ConnectionError):
        # A group mismatch is final: connect says so at once, with the cause.
        await client.connect(address, timeout=10)
    await client.shutdown()
    await server.shutdown()
