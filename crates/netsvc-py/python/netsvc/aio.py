"""netsvc for asyncio: the same services, exchange and reports as ``netsvc``, as
coroutines and async iterators.

    import asyncio
    from netsvc import aio

    async def main():
        async with aio.Runtime() as rt:
            await rt.client().connect("127.0.0.1:11111")
            echo = rt.service("echo")

            @echo.export
            async def shout(text):
                return text.upper()

            print(await aio.endpoint("echo").call("shout", "hi"))

    asyncio.run(main())

The futures run on the process's one Rust runtime; the Python code (methods, iteration)
runs on the asyncio event loop. Cancelling an ``await endpoint.call(...)`` drops the Rust
request, which tells the service's side (CANCEL). Report monitors and registry watches read
the core's bounded queues: a slow reader has reports of one subject coalesced (counted in
``monitor.missed``, or as ``Missed`` events), and a registry watch that falls too far
behind yields ``Lagged`` and ends.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from . import _netsvc
from ._classic import _arguments_message, _arity
from ._errors import (
    RequestTimeout,
    ServiceFailure,
    ServiceUnavailable,
)

__all__ = [
    "Failure", "ServiceFailure", "ServiceUnavailable", "RequestTimeout",
    "Runtime", "Service", "Endpoint", "endpoint", "Exchange", "Connector",
    "ReportMonitor", "RegistryWatch", "Report", "PublisherAvailable", "PublisherWithdrawn",
    "Missed", "Announcement", "Lagged", "Subscription", "Connection",
    "services", "lookup_name", "lookup_group", "lookup_address",
    "watch_registry", "watch_name", "watch_group", "watch_address",
    "DEFAULT_TIMEOUT", "ServiceBinding",
]

#: The failure exception: ``.error`` (the numeric code), ``.description``, ``.origin``,
#: ``.details`` and ``.kind`` (``"timeout"``, ``"withdrawn"``, ``"service-unavailable"``,
#: ``"method-unavailable"``, ``"bad-arguments"``, ``"method-failed"``, ``"application"``...).
Failure = ServiceFailure

ServiceBinding = _netsvc.ServiceBinding

#: Seconds a call waits for its response unless told otherwise.
DEFAULT_TIMEOUT = 60.0

_UNSET: Any = object()
F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- events

@dataclass(frozen=True)
class Report:
    """One report: its subject, content, publisher (a binding), and the pattern it
    matched (None for a targeted report that matched none)."""
    subject: str
    content: Any
    publisher: Any
    pattern: str | None

    @property
    def service(self) -> str:
        return str(self.publisher.serviceName())


@dataclass(frozen=True)
class PublisherAvailable:
    publisher: Any


@dataclass(frozen=True)
class PublisherWithdrawn:
    publisher: Any


@dataclass(frozen=True)
class Missed:
    """The reader was behind: this many reports were coalesced into newer ones."""
    count: int


@dataclass(frozen=True)
class Announcement:
    """A registry change: ``status`` is ``"available"``, ``"withdrawn"``,
    ``"joined"`` or ``"left"`` (``group`` set for the last two)."""
    binding: Any
    status: str
    group: str | None = None


@dataclass(frozen=True)
class Lagged:
    """The watch fell too far behind and was cut off; watch again for a fresh snapshot."""


@dataclass(frozen=True)
class Subscription:
    subscriber: Any
    pattern: str
    requested: bool


@dataclass(frozen=True)
class Connection:
    """A link change: ``state`` is ``"active"``, ``"inactive"`` or ``"resynced"``."""
    state: str
    group: str
    local_address: str
    remote_address: str
    remote_process: str
    reason: str | None


def _event(ev: tuple[Any, ...]) -> Any:
    kind = ev[0]
    if kind == "report":
        _, _, subject, content, publisher, pattern, error = ev
        if error is not None:
            raise ServiceFailure(44, "Response Decoding Error", "netsvc",
                                 f"report on {subject!r}: {error}", "decoding")
        return Report(subject, content, publisher, pattern)
    if kind == "publisher":
        return PublisherAvailable(ev[2]) if ev[3] else PublisherWithdrawn(ev[2])
    if kind == "missed":
        return Missed(int(ev[2]))
    if kind == "announcement":
        _, _, binding, group, status = ev
        if group is None:
            return Announcement(binding, "available" if status == 0 else "withdrawn")
        return Announcement(binding, "joined" if status == 0 else "left", group)
    if kind == "lagged":
        return Lagged()
    if kind == "subscription":
        return Subscription(ev[2], ev[3], ev[4] == 0)
    if kind == "connection":
        _, _, state, group, local, remote, process, reason = ev
        return Connection({0: "active", 1: "inactive"}.get(state, "resynced"), group, local,
                          remote, process, reason)
    return None


class _Stream:
    def __init__(self, stream: Any, owner: Any = None) -> None:
        self._stream = stream
        # A subscription belongs to a service: it lives as long as its monitor does.
        self._owner = owner

    def __aiter__(self) -> "_Stream":
        return self

    async def _next_event(self) -> Any:
        ev = await self._stream.next()
        if ev is None:
            raise StopAsyncIteration
        return _event(ev)

    async def __anext__(self) -> Any:
        return await self._next_event()

    def close(self) -> None:
        """Ends the subscription."""
        self._stream.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class ReportMonitor(_Stream):
    """``async for report in monitor``: reports only; publisher notices are skipped and
    coalesced reports counted in ``missed``. ``monitor.events()`` gives everything."""

    def __init__(self, stream: Any, owner: Any = None) -> None:
        super().__init__(stream, owner)
        self.missed = 0

    async def __anext__(self) -> Report:
        while True:
            ev = await self._next_event()
            if isinstance(ev, Report):
                return ev
            if isinstance(ev, Missed):
                self.missed += ev.count

    async def events(self) -> AsyncIterator[Report | PublisherAvailable | PublisherWithdrawn | Missed]:
        """Every event: reports, publisher notices and missed counts."""
        while True:
            try:
                ev = await self._next_event()
            except StopAsyncIteration:
                return
            if isinstance(ev, Missed):
                self.missed += ev.count
            yield ev


class RegistryWatch(_Stream):
    """``async for announcement in watch``: the current matches first, then each change;
    yields ``Lagged`` and ends if it falls too far behind."""


def watch_registry() -> RegistryWatch:
    return RegistryWatch(_netsvc.watch_stream("registry", ""))


def watch_name(name: str) -> RegistryWatch:
    return RegistryWatch(_netsvc.watch_stream("name", name))


def watch_group(group: str) -> RegistryWatch:
    return RegistryWatch(_netsvc.watch_stream("group", group))


def watch_address(address: str) -> RegistryWatch:
    return RegistryWatch(_netsvc.watch_stream("address", address))


def services() -> list[Any]:
    return _netsvc.services()


def lookup_name(name: str) -> list[Any]:
    return _netsvc.lookup_name(name)


def lookup_group(group: str) -> list[Any]:
    return _netsvc.lookup_group(group)


def lookup_address(address: str) -> Any:
    return _netsvc.lookup_address(address)


# --------------------------------------------------------------------------- calls

class Endpoint:
    """Calls the methods of a service, by name (the first one at each call) or binding:
    ``await ep.call("method", *args)`` or ``await ep.method(*args)``."""

    def __init__(self, target: Any, *, timeout: float | None = DEFAULT_TIMEOUT,
                 _core: Any = None) -> None:
        self._target = target
        self._timeout = timeout
        self._core = _core

    @property
    def available(self) -> bool:
        """Whether a call would find a service now."""
        return bool(_netsvc.is_available(self._target))

    def binding(self) -> Any:
        return _netsvc.resolve(self._target)

    async def call(self, method: str, *args: Any, timeout: float | None = _UNSET) -> Any:
        """The method's result; raises ``Failure`` (``.error`` the code, ``.kind``):
        46 no such service, 47 timeout, 55/56/57 from the service, 57 ``withdrawn``.
        ``timeout`` None waits as long as the service exists."""
        t = self._timeout if timeout is _UNSET else timeout
        if self._core is not None:
            return await self._core.call(self._target, method, list(args), t)
        return await _netsvc.call(self._target, method, list(args), t)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)

        async def method(*args: Any, timeout: float | None = _UNSET) -> Any:
            return await self.call(name, *args, timeout=timeout)
        return method


def endpoint(target: Any, *, timeout: float | None = DEFAULT_TIMEOUT) -> Endpoint:
    """An endpoint for calls from no service in particular."""
    return Endpoint(target, timeout=timeout)


# --------------------------------------------------------------------------- services

class Service:
    """A service whose methods are ``async def`` (plain functions work too). Make it
    while the event loop runs: its methods run on that loop."""

    def __init__(self, name: str = "", audience: str = "*", *, visible: bool = True) -> None:
        self._core = _netsvc.ServiceCore(name, audience, visible)

    @property
    def binding(self) -> Any:
        return self._core.binding()

    @property
    def name(self) -> str:
        return str(self._core.binding().serviceName())

    @property
    def address(self) -> str:
        return str(self._core.binding().serviceAddress())

    def export(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Exports ``fn`` (also as a decorator, ``@svc.export`` or
        ``@svc.export(name="x")``). It is called with the request's arguments; its
        return value is the response; a ``Failure`` it raises is sent as is, any other
        exception as 57 with the traceback; wrong argument counts are 56."""
        def register(f: F) -> F:
            lo, hi = _arity(f)
            is_coro = inspect.iscoroutinefunction(f)

            async def run(*args: Any) -> Any:
                if len(args) < lo or (hi is not None and len(args) > hi):
                    raise ServiceFailure(56, "Parameters Incorrect", "netsvc",
                                         _arguments_message(lo, hi, len(args)))
                if is_coro:
                    return await f(*args)
                result = f(*args)
                if inspect.isawaitable(result):
                    result = await result
                return result
            self._core.export_async(name or f.__name__, run)
            return f
        if fn is None:
            return register
        return register(fn)

    def unexport(self, name: str) -> None:
        self._core.unexport(name)

    def exported_methods(self) -> list[str]:
        return list(self._core.exported_methods())

    def announce(self) -> None:
        self._core.announce()

    def join_group(self, group: str) -> None:
        self._core.join_group(group)

    def leave_group(self, group: str) -> None:
        self._core.leave_group(group)

    def publish(self, subject: str, content: Any, lifetime: float = 0) -> int:
        """Publishes (lifetime 0 none, N seconds, -1 forever); returns how many
        subscriptions it reached."""
        return int(self._core.publish(subject, content, float(lifetime)))

    def send_report(self, subscriber: Any, subject: str, content: Any) -> int:
        return int(self._core.send_report(subscriber, subject, content))

    def expire_reports(self, pattern: str = "*", age: float = 0) -> int:
        return int(self._core.expire_reports(pattern, float(age)))

    def monitor(self, target: Any, pattern: str = "*") -> ReportMonitor:
        """Reports of every service of that name (now or later) or of one binding."""
        return ReportMonitor(self._core.monitor_stream(target, pattern), self)

    def monitor_all(self, pattern: str = "*") -> ReportMonitor:
        """Reports of every publisher."""
        return ReportMonitor(self._core.monitor_stream(None, pattern), self)

    def subscriptions(self) -> _Stream:
        """``async for sub in svc.subscriptions()``: who subscribes, then each change."""
        return _Stream(self._core.watch_subscriptions_stream(), self)

    def endpoint(self, target: Any, *, timeout: float | None = DEFAULT_TIMEOUT) -> Endpoint:
        """An endpoint whose requests carry this service as their sender."""
        return Endpoint(target, timeout=timeout, _core=self._core)

    def withdraw(self) -> None:
        self._core.withdraw()

    async def __aenter__(self) -> "Service":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.withdraw()


# --------------------------------------------------------------------------- exchange

class Connector:
    """A client's connection to one server, kept up by the exchange."""

    def __init__(self, core: Any) -> None:
        self._core = core

    @property
    def address(self) -> str:
        return str(self._core.address)

    @property
    def synced(self) -> bool:
        return bool(self._core.is_synced())

    def status(self) -> tuple[str, str | None]:
        """(``connecting``/``linked``/``synced``/``stopped``, the last failure)."""
        return self._core.status()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Returns once linked and synced (again, after a reconnect); raises
        ConnectionError naming the cause when ``timeout`` passes or it gives up."""
        await self._core.synced_async(timeout)


class Exchange:
    """One exchange of this process (one per group): ``Exchange.server()`` listens and
    relays, ``Exchange.client()`` connects."""

    def __init__(self, server: bool = False, group: str = "",
                 authorise: Callable[[str], bool] | None = None, *,
                 tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_server_name: str | None = None,
                 user: str | None = None, password: str | None = None,
                 token: str | None = None, users: str | None = None) -> None:
        """``tls_ca``: connect with TLS trusting this CA file (PEM), with ``tls_cert`` and
        ``tls_key`` as a client certificate, expecting ``tls_server_name`` if given;
        ``user`` + ``password`` or ``token``: log in; ``users``: a users file, so that
        peers must log in (docs/SECURITY.md). A bad file or combination: ValueError."""
        self._core = _netsvc.ExchangeCore(
            server, group, authorise, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            tls_server_name=tls_server_name, user=user, password=password, token=token,
            users=users)
        # An exchange runs until it is shut down, whether or not it is referenced.
        _live_exchanges.add(self)

    @classmethod
    def server(cls, group: str = "", **security: Any) -> "Exchange":
        return cls(True, group, **security)

    @classmethod
    def client(cls, group: str = "", **security: Any) -> "Exchange":
        return cls(False, group, **security)

    async def listen(self, address: str = "127.0.0.1:0", *, tls_cert: str | None = None,
                     tls_key: str | None = None, client_ca: str | None = None,
                     require_client_cert: bool = False) -> str:
        """Listens on ``HOST:PORT``; returns the address bound. With ``tls_cert`` and
        ``tls_key`` (PEM files) TLS only; ``client_ca`` verifies client certificates,
        which ``require_client_cert`` makes mandatory."""
        return str(await self._core.listen_async(
            address, tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca,
            require_client_cert=require_client_cert))

    async def connect(self, address: str, *, retry: float = 1.0,
                      timeout: float | None = 10.0) -> Connector:
        """Connects to a server and returns once linked and synced (the server's whole
        registry is here). It keeps retrying every ``retry`` s and reconnects after a loss;
        ``timeout`` None waits as long as that takes. Raises ConnectionError with the cause."""
        c = Connector(self._core.connect(address, float(retry)))
        await c.wait_synced(timeout)
        return c

    def connect_nowait(self, address: str, *, retry: float = 1.0) -> Connector:
        """Starts connecting in the background and returns at once."""
        return Connector(self._core.connect(address, float(retry)))

    def connections(self) -> _Stream:
        """``async for c in exchange.connections()``: links up now, then each change."""
        return _Stream(self._core.watch_connections_stream(), self)

    async def shutdown(self, grace: float = 2.0) -> None:
        """Stops listening and connecting, flushes the links (at most ``grace`` s)."""
        _live_exchanges.discard(self)
        await self._core.shutdown_async(float(grace))

    async def __aenter__(self) -> "Exchange":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.shutdown()


_live_exchanges: set[Exchange] = set()


class Runtime:
    """``async with aio.Runtime() as rt``: services and exchanges made through it are
    withdrawn and shut down (links flushed) when the block ends."""

    def __init__(self) -> None:
        self._services: list[Service] = []
        self._exchanges: list[Exchange] = []

    def service(self, name: str = "", audience: str = "*", *, visible: bool = True) -> Service:
        s = Service(name, audience, visible=visible)
        self._services.append(s)
        return s

    def client(self, group: str = "") -> Exchange:
        e = Exchange.client(group)
        self._exchanges.append(e)
        return e

    def server(self, group: str = "") -> Exchange:
        e = Exchange.server(group)
        self._exchanges.append(e)
        return e

    def endpoint(self, target: Any, *, timeout: float | None = DEFAULT_TIMEOUT) -> Endpoint:
        return endpoint(target, timeout=timeout)

    async def __aenter__(self) -> "Runtime":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for s in self._services:
            s.withdraw()
        for e in self._exchanges:
            await e.shutdown()
