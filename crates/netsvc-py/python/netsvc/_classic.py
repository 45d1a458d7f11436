"""The original OSE ``netsvc`` Python API, on the Rust core.

Every callback of this API runs on the thread that calls ``Dispatcher().run()``: the Rust
runtime (on threads of its own) posts events into one bounded queue that ``run()`` drains,
and each event becomes a job, as in the original.
"""

from __future__ import annotations

import collections
import datetime as _dt
import fnmatch
import functools
import heapq
import inspect
import itertools
import logging
import os
import signal as _signal
import threading
import time
import weakref
from typing import Any, Callable

from . import _netsvc
from ._errors import (
    ServiceFailure,
    ServiceUnavailable,
    WITHDRAWN_DETAILS,
)

_log = logging.getLogger("netsvc")

# Job types.
IDLE_JOB = 0
STANDARD_JOB = 1
PRIORITY_JOB = 2

# Service location, status, subscription kinds, visibility.
SERVICE_LOCAL = 0
SERVICE_REMOTE = 1
SERVICE_AVAILABLE = 0
SERVICE_WITHDRAWN = 1
SERVICE_NAME = 0
SERVICE_ADDRESS = 1
SERVICE_REGISTRY = 2
SERVICE_GROUP = 3
SUBSCRIPTION_REQUESTED = 0
SUBSCRIPTION_WITHDRAWN = 1
SERVICE_HIDDEN = 0
SERVICE_VISIBLE = 1

# Exchange.
EXCHANGE_CLIENT = 0
EXCHANGE_SERVER = 1
CONNECTION_ACTIVE = 0
CONNECTION_INACTIVE = 1
CONNECTION_BLOCKED = 0
CONNECTION_CLEARED = 1
CONNECTION_BACKLOG = 2

# Shutdown.
SHUTDOWN_PENDING = 0
SHUTDOWN_ARRIVED = 1

# Identifier formats.
ID_LONG_FORMAT = 0
ID_SHORT_FORMAT = 1

# Failure codes (netrpc/common.py of the original).
CLIENT_UNKNOWN_ERROR = 40
CLIENT_RESOURCE_UNAVAILABLE = 41
CLIENT_REQUEST_ENCODING_ERROR = 42
CLIENT_RESPONSE_HEADERS_INVALID = 43
CLIENT_RESPONSE_DECODING_ERROR = 44
CLIENT_SERVICE_ADDRESS_INVALID = 45
CLIENT_SERVER_ADDRESS_INVALID = 45
CLIENT_SERVICE_UNAVAILABLE = 46
CLIENT_SERVER_UNAVAILABLE = 46
CLIENT_REQUEST_TIMEOUT = 47
CLIENT_REQUEST_ABORTED = 48
SERVER_UNKNOWN_ERROR = 50
SERVER_RESOURCE_UNAVAILABLE = 51
SERVER_RESPONSE_ENCODING_ERROR = 52
SERVER_REQUEST_HEADERS_INVALID = 53
SERVER_REQUEST_DECODING_ERROR = 54
SERVER_METHOD_UNAVAILABLE = 55
SERVER_PARAMETERS_INCORRECT = 56
SERVER_APPLICATION_ERROR = 57
SERVER_RESPONSE_ABORTED = 58

#: How often ``run()`` looks at signals (Ctrl-C) while nothing happens, in seconds.
_POLL = 0.05


# --------------------------------------------------------------------------- helpers

def _arity(fn: Callable[..., Any]) -> tuple[int, int | None]:
    """(min, max) positional arguments ``fn`` accepts; max None: any number."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (0, None)
    lo = hi = 0
    var = False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            hi += 1
            if p.default is p.empty:
                lo += 1
        elif p.kind == p.VAR_POSITIONAL:
            var = True
    return lo, (None if var else hi)


def _call_fit(cb: Callable[..., Any], options: dict[int, tuple[Any, ...]]) -> Any:
    """Calls ``cb`` with the longest of the argument tuples ``options`` it accepts."""
    lo, hi = _arity(cb)
    for n in sorted(options, reverse=True):
        if n >= lo and (hi is None or n <= hi):
            return cb(*options[n])
    raise TypeError(f"callback {cb!r} takes none of {sorted(options)} arguments")


def _arguments_message(lo: int, hi: int | None, got: int) -> str:
    if hi is None:
        return f"Expected {lo} or more arguments, received {got}."
    if lo == hi:
        return f"Expected {lo} arguments, received {got}."
    return f"Expected {lo}-{hi} arguments, received {got}."


def _weakly(obj: Any, name: str, *first: Any) -> Callable[[tuple[Any, ...]], None]:
    """An event handler that calls ``obj.name(*first, event)`` while ``obj`` lives."""
    ref = weakref.ref(obj)

    def handler(event: tuple[Any, ...]) -> None:
        target = ref()
        if target is not None:
            getattr(target, name)(*first, event)
    return handler


_id_counter = itertools.count(((int(time.time()) % 0xFFFF) << 16) + 1)


def uniqueId(type: int = ID_LONG_FORMAT, prefix: str | None = None) -> str:  # noqa: A002
    """A process-unique identifier, in the original's layout (host part is the process
    identity's host name, not an IPv4 address)."""
    pid = f"{os.getpid():X}"
    n = f"{next(_id_counter):X}"
    host = os.uname().nodename
    if type == ID_SHORT_FORMAT:
        return f"{prefix or ''}{host}:{pid}:{n}"
    return f"{prefix or ''}{host}:{pid}:{int(time.time()):X}:{n}"


def processIdentity() -> str:
    """This process's identity on the exchange."""
    return _netsvc.process_identity()


def matchSubject(pattern: str, subject: str) -> bool:
    """Whether ``subject`` matches the glob ``pattern`` (``*`` any run, ``?`` one char)."""
    return _netsvc.match_subject(pattern, subject)


# --------------------------------------------------------------------------- values

Boolean = bool


class Binary(bytes):
    """Raw bytes (a ``bytes``; plain ``bytes`` work as well)."""


def Date(v: Any) -> _dt.date:
    """A date, from a ``datetime.date`` or ISO text ``YYYY-MM-DD``."""
    return v if isinstance(v, _dt.date) and not isinstance(v, _dt.datetime) \
        else _dt.date.fromisoformat(str(v))


def Time(v: Any) -> _dt.time:
    """A time of day, from a ``datetime.time`` or ISO text ``hh:mm:ss``."""
    return v if isinstance(v, _dt.time) else _dt.time.fromisoformat(str(v))


def DateTime(v: Any) -> _dt.datetime:
    """A date and time, from a ``datetime.datetime`` or ISO text."""
    return v if isinstance(v, _dt.datetime) else _dt.datetime.fromisoformat(str(v))


def Duration(v: Any) -> _dt.timedelta:
    """A span of time, from a ``datetime.timedelta`` or a number of seconds."""
    return v if isinstance(v, _dt.timedelta) else _dt.timedelta(seconds=float(v))


Opaque = _netsvc.Opaque


# --------------------------------------------------------------------------- dispatcher

class Job:
    """A callback with parameters that can be scheduled, cancelled and reset."""

    def __init__(self, callback: Callable[..., Any], params: tuple[Any, ...] = ()) -> None:
        self._callback = callback
        self._params = tuple(params)
        self._cancelled = False

    def schedule(self, type: int = STANDARD_JOB, params: tuple[Any, ...] | None = None) -> None:  # noqa: A002
        if params is not None:
            self._params = tuple(params)
        Dispatcher().schedule(self, type)

    def cancel(self) -> None:
        self._cancelled = True

    def reset(self) -> None:
        self._cancelled = False

    def __bool__(self) -> bool:
        return not self._cancelled

    def _execute(self) -> None:
        if not self._cancelled:
            self._callback(*self._params)


class _Timer:
    __slots__ = ("when", "callback", "name", "agent", "cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], name: str, agent: Any) -> None:
        self.when = when
        self.callback = callback
        self.name = name
        self.agent = agent
        self.cancelled = False


class Dispatcher:
    """The one job queue of the process (a singleton). ``run()`` drains it on the thread
    that calls it; every callback of this API runs there."""

    _instance: "Dispatcher | None" = None
    _lock = threading.Lock()

    def __new__(cls) -> "Dispatcher":
        with cls._lock:
            if cls._instance is None:
                self = super().__new__(cls)
                self._init()
                cls._instance = self
            return cls._instance

    def _init(self) -> None:
        self._jobs: dict[int, collections.deque[Any]] = {
            PRIORITY_JOB: collections.deque(),
            STANDARD_JOB: collections.deque(),
            IDLE_JOB: collections.deque(),
        }
        self._jobs_lock = threading.Lock()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._stop = False
        self._running = False
        self._thread: int | None = None
        # Who receives what arrives from the Rust side, by token.
        self._services: weakref.WeakValueDictionary[int, Service] = weakref.WeakValueDictionary()
        self._tokens: dict[int, Callable[[tuple[Any, ...]], Any]] = {}
        self._requests: dict[int, Service] = {}
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()
        self._shutdown_subscribers: weakref.WeakKeyDictionary[Any, Callable[..., Any]] = \
            weakref.WeakKeyDictionary()
        self._shutting_down = False
        self._shutdown_suspended = 0
        self._shutdown_arrived = False

    # -- scheduling
    def schedule(self, job: "Job | Callable[[], Any]", type: int = STANDARD_JOB) -> None:  # noqa: A002
        """Queues a callable (called with no arguments) or a ``Job``."""
        if type not in self._jobs:
            raise ValueError(f"job type {type!r}: use IDLE_JOB, STANDARD_JOB or PRIORITY_JOB")
        with self._jobs_lock:
            self._jobs[type].append(job)
        if self._thread is not None and threading.get_ident() != self._thread:
            _netsvc.wakeup()

    def _start_timer(self, delay: float, callback: Callable[..., Any], name: str, agent: Any,
                     absolute: bool = False) -> _Timer:
        when = delay if absolute else time.monotonic() + max(0.0, float(delay))
        t = _Timer(when, callback, name, agent)
        heapq.heappush(self._timers, (when, next(self._seq), t))
        if self._thread is not None and threading.get_ident() != self._thread:
            _netsvc.wakeup()
        return t

    # -- running
    def run(self) -> None:
        """Runs jobs and events until ``stop()``, or until nothing is left that could
        produce one. Ctrl-C raises KeyboardInterrupt out of it within about 50 ms."""
        self._thread = threading.get_ident()
        self._running = True
        self._stop = False
        try:
            while not self._stop:
                if not self._turn() and self._nothing_left():
                    break
        finally:
            self._running = False
            self._thread = None

    def _has_jobs(self) -> bool:
        return bool(self._jobs[PRIORITY_JOB] or self._jobs[STANDARD_JOB])

    def _next_timer(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def _turn(self) -> bool:
        """One round: events in, then priority jobs, a standard job, due timers, and an
        idle job if nothing else ran. Whether anything ran."""
        if self._has_jobs():
            timeout = 0.0
        else:
            nxt = self._next_timer()
            timeout = _POLL if nxt is None else min(_POLL, max(0.0, nxt - time.monotonic()))
            if self._jobs[IDLE_JOB]:
                timeout = 0.0
        for event in _netsvc.wait_events(timeout):
            self._route(event)
        ran = False
        while self._jobs[PRIORITY_JOB] and not self._stop:
            with self._jobs_lock:
                job = self._jobs[PRIORITY_JOB].popleft()
            self._execute(job)
            ran = True
        if self._stop:
            return True
        if self._jobs[STANDARD_JOB]:
            with self._jobs_lock:
                job = self._jobs[STANDARD_JOB].popleft()
            self._execute(job)
            ran = True
        now = time.monotonic()
        while not self._stop:
            nxt = self._next_timer()
            if nxt is None or nxt > now:
                break
            _, _, t = heapq.heappop(self._timers)
            if t.agent is not None:
                t.agent._timer_fired(t)
            self._execute(lambda t=t: _call_fit(t.callback, {0: (), 1: (t.name,)}))
            ran = True
        if not ran and self._jobs[IDLE_JOB] and not self._stop:
            with self._jobs_lock:
                job = self._jobs[IDLE_JOB].popleft()
            self._execute(job)
            ran = True
        return ran

    def _nothing_left(self) -> bool:
        return (not self._has_jobs() and not self._jobs[IDLE_JOB]
                and self._next_timer() is None and len(self._sources) == 0
                and not self._requests and _netsvc.live_tasks() == 0)

    def _execute(self, job: Any) -> None:
        try:
            if isinstance(job, Job):
                job._execute()
            else:
                job()
        except SystemExit:
            self._stop = True
            raise
        except KeyboardInterrupt:
            raise
        except Exception:
            # As in the original's source (not its manual): log, and carry on.
            _log.exception("exception in a netsvc callback")

    def _route(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "request":
            _, token, method, args, sender, conv, responder = event
            service = self._services.get(token)
            if service is None:
                responder.fail(57, "Application Error", "netsvc", WITHDRAWN_DETAILS)
                return
            self._jobs[PRIORITY_JOB].append(
                lambda: service._handle_request(method, args, sender, conv, responder))
        elif kind in ("response", "failure"):
            owner = self._requests.pop(event[1], None)
            if owner is not None:
                self._jobs[PRIORITY_JOB].append(lambda: owner._handle_outcome(event))
        elif kind == "wakeup":
            pass
        else:
            handler = self._tokens.get(event[1])
            if kind == "closed":
                self._tokens.pop(event[1], None)
            elif kind == "lagged":
                _log.warning("a subscription or watch fell too far behind and was cut off")
                self._tokens.pop(event[1], None)
            elif handler is not None:
                jtype = STANDARD_JOB if kind in ("announcement", "connection") else PRIORITY_JOB
                self._jobs[jtype].append(lambda: handler(event))

    def stop(self) -> None:
        """Makes ``run()`` return after the job under way."""
        self._stop = True
        if self._thread is not None and threading.get_ident() != self._thread:
            _netsvc.wakeup()

    def wakeup(self) -> None:
        _netsvc.wakeup()

    def reset(self) -> None:
        """Discards every queued job and timer."""
        with self._jobs_lock:
            for q in self._jobs.values():
                q.clear()
        self._timers.clear()

    def isRunning(self) -> bool:
        return self._running

    def isStopped(self) -> bool:
        return self._stop

    def isWaiting(self) -> bool:
        return self._running and not self._has_jobs()

    # -- shutdown
    def shutdown(self, delay: float = 0) -> None:
        """Orderly shutdown: subscribers hear SHUTDOWN_PENDING now and SHUTDOWN_ARRIVED
        after ``delay`` seconds (0: 1 s), then the dispatcher stops. Repeats are ignored."""
        if self._shutting_down:
            return
        self._shutting_down = True
        delay = float(delay) if delay and delay > 0 else 1.0
        self._notify_shutdown(SHUTDOWN_PENDING)
        self._start_timer(delay, self._arrive, "$SHUTDOWN", None)

    scheduleShutdown = shutdown

    def _arrive(self) -> None:
        if self._shutdown_suspended > 0:
            self._shutdown_arrived = True
            return
        self._notify_shutdown(SHUTDOWN_ARRIVED)
        self.schedule(self.stop, PRIORITY_JOB)

    def suspendShutdown(self) -> None:
        self._shutdown_suspended += 1

    def resumeShutdown(self) -> None:
        if self._shutdown_suspended > 0:
            self._shutdown_suspended -= 1
        if self._shutdown_suspended == 0 and self._shutdown_arrived:
            self._shutdown_arrived = False
            self._arrive()

    def _notify_shutdown(self, category: int) -> None:
        for cb in list(self._shutdown_subscribers.values()):
            self.schedule(functools.partial(_call_fit, cb, {1: (category,), 2: (category, "")}),
                          PRIORITY_JOB)

    def monitor(self, signum: int) -> None:
        """Makes signal ``signum`` start an orderly shutdown; a second one during it exits
        the process with status 1."""
        def handler(sig: int, frame: Any) -> None:
            if self._shutting_down:
                os._exit(1)
            self.schedule(self.shutdown, PRIORITY_JOB)
        _signal.signal(signum, handler)


def terminate() -> None:
    """Stops the dispatcher and raises SystemExit."""
    Dispatcher().stop()
    raise SystemExit


# --------------------------------------------------------------------------- agents

class Agent:
    """Timers, alarms, one-shot actions, signals and shutdown notices for one object."""

    def __init__(self) -> None:
        self._timers_by_name: dict[str, _Timer] = {}
        self._signal_tokens: dict[int, Callable[..., Any]] = {}

    def _agent_init(self) -> None:
        if not hasattr(self, "_timers_by_name"):
            Agent.__init__(self)

    def startTimer(self, callback: Callable[..., Any], delay: float, name: str | None = None) -> str:
        """Calls ``callback()`` (or ``callback(name)``) once after ``delay`` seconds; a
        pending timer of the same name is cancelled. Returns the name."""
        self._agent_init()
        name = name or uniqueId(ID_SHORT_FORMAT, "$TIMER?")
        self.cancelTimer(name)
        self._timers_by_name[name] = Dispatcher()._start_timer(delay, callback, name, self)
        return name

    def setAlarm(self, callback: Callable[..., Any], when: float, name: str | None = None) -> str:
        """Calls ``callback`` once at the epoch time ``when``."""
        name = name or uniqueId(ID_SHORT_FORMAT, "$ALARM?")
        return self.startTimer(callback, max(0.0, float(when) - time.time()), name)

    def scheduleAction(self, callback: Callable[..., Any], mode: int = STANDARD_JOB,
                       name: str | None = None) -> str:
        """A cancellable one-shot job (integer modes only; the original's cron strings
        are not supported)."""
        if not isinstance(mode, int):
            raise NotImplementedError("cron-style actions are not supported; use startTimer")
        name = name or uniqueId(ID_SHORT_FORMAT, "$ACTION?")
        return self.startTimer(callback, 0.0, name)

    def _timer_fired(self, t: _Timer) -> None:
        if self._timers_by_name.get(t.name) is t:
            del self._timers_by_name[t.name]

    def cancelTimer(self, name: str) -> None:
        self._agent_init()
        t = self._timers_by_name.pop(name, None)
        if t is not None:
            t.cancelled = True

    cancelAlarm = cancelTimer
    cancelAction = cancelTimer

    def cancelAllTimers(self, pattern: str = "*") -> None:
        self._agent_init()
        for name in [n for n in self._timers_by_name if fnmatch.fnmatchcase(n, pattern)]:
            self.cancelTimer(name)

    cancelAllAlarms = cancelAllTimers
    cancelAllActions = cancelAllTimers

    def timerPending(self, name: str) -> bool:
        self._agent_init()
        return name in self._timers_by_name

    alarmPending = timerPending
    actionPending = timerPending

    def subscribeSignal(self, callback: Callable[..., Any], signum: int) -> None:
        """Calls ``callback(signum)`` (as a priority job) when the signal arrives."""
        self._agent_init()
        d = Dispatcher()

        def handler(sig: int, frame: Any) -> None:
            d.schedule(lambda: _call_fit(callback, {0: (), 1: (sig,)}), PRIORITY_JOB)
        self._signal_tokens[signum] = callback
        _signal.signal(signum, handler)

    def unsubscribeSignal(self, signum: int) -> None:
        self._agent_init()
        if self._signal_tokens.pop(signum, None) is not None:
            _signal.signal(signum, _signal.SIG_DFL)

    def subscribeShutdown(self, callback: Callable[..., Any]) -> None:
        """Calls ``callback(category[, description])`` with SHUTDOWN_PENDING then
        SHUTDOWN_ARRIVED when the dispatcher shuts down."""
        Dispatcher()._shutdown_subscribers[self] = callback

    def unsubscribeShutdown(self) -> None:
        Dispatcher()._shutdown_subscribers.pop(self, None)

    def destroyAgent(self) -> None:
        """Cancels every timer and subscription of this agent."""
        self._agent_init()
        self.cancelAllTimers()
        for signum in list(self._signal_tokens):
            self.unsubscribeSignal(signum)
        self.unsubscribeShutdown()


# --------------------------------------------------------------------------- registry

class Registry:
    """The process's service registry: immediate lookups (a singleton)."""

    _instance: "Registry | None" = None

    def __new__(cls) -> "Registry":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def serviceAgents(self) -> list[Any]:
        return _netsvc.services()

    def serviceGroups(self, address: str | None = None) -> list[str]:
        return _netsvc.groups(address)

    def lookupServiceName(self, name: str) -> list[Any]:
        return _netsvc.lookup_name(name)

    def lookupServiceGroup(self, group: str) -> list[Any]:
        return _netsvc.lookup_group(group)

    def lookupServiceAddress(self, address: str) -> Any:
        return _netsvc.lookup_address(address)


class Monitor(Agent, Registry):
    """Registry lookups and subscriptions to announcements, without being a service."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "Monitor":
        return object.__new__(cls)

    def __init__(self) -> None:
        Agent.__init__(self)
        self._watches: dict[tuple[Any, ...], int] = {}

    def _monitor_init(self) -> None:
        if not hasattr(self, "_watches"):
            Monitor.__init__(self)

    def _watch(self, key: tuple[Any, ...], kind: str, arg: str,
               deliver: Callable[[Any, Any, int], None]) -> int:
        self._monitor_init()
        old = self._watches.pop(key, None)
        d = Dispatcher()
        if old is not None:
            _netsvc.cancel(old)
            d._tokens.pop(old, None)
        token, status = _netsvc.watch_queued(kind, arg)
        self._watches[key] = token
        me = weakref.ref(self)

        def handler(event: tuple[Any, ...]) -> None:
            if me() is not None:
                _, _, binding, group, st = event
                deliver(binding, group, st)
        d._tokens[token] = handler
        d._sources.add(self)
        return status

    def _unwatch(self, match: Callable[[tuple[Any, ...]], bool]) -> None:
        self._monitor_init()
        d = Dispatcher()
        for key in [k for k in self._watches if match(k)]:
            token = self._watches.pop(key)
            _netsvc.cancel(token)
            d._tokens.pop(token, None)

    def subscribeRegistry(self, callback: Callable[..., Any]) -> None:
        """``callback(binding, group, status)`` for every service and group change
        (group None for the service itself); the current services first."""
        self._watch(("registry",), "registry", "",
                    lambda b, g, s: callback(b, g, s))

    def unsubscribeRegistry(self) -> None:
        self._unwatch(lambda k: k[0] == "registry")

    def subscribeServiceName(self, callback: Callable[..., Any], name: str) -> None:
        """``callback(binding, status)`` (or ``(binding, None, status)``) as services of
        that name come and go; the current ones first. Never group changes."""
        def deliver(b: Any, g: Any, s: int) -> None:
            if g is None:
                _call_fit(callback, {2: (b, s), 3: (b, None, s)})
        self._watch(("name", name), "name", name, deliver)

    def unsubscribeServiceName(self, name: str | None = None) -> None:
        self._unwatch(lambda k: k[0] == "name" and (name is None or k[1] == name))

    def subscribeServiceGroup(self, callback: Callable[..., Any], group: str) -> None:
        """``callback(binding, status)`` (or ``(binding, group, status)``) as services join
        (AVAILABLE) and leave (WITHDRAWN) the group; the current members first."""
        def deliver(b: Any, g: Any, s: int) -> None:
            _call_fit(callback, {2: (b, s), 3: (b, g, s)})
        self._watch(("group", group), "group", group, deliver)

    def unsubscribeServiceGroup(self, group: str | None = None) -> None:
        self._unwatch(lambda k: k[0] == "group" and (group is None or k[1] == group))

    def subscribeServiceAddress(self, callback: Callable[..., Any], address: str,
                                subscription: str = "") -> int:
        """``callback(binding, group, status[, subscription])`` for that one service;
        returns SERVICE_AVAILABLE or SERVICE_WITHDRAWN at once."""
        def deliver(b: Any, g: Any, s: int) -> None:
            _call_fit(callback, {3: (b, g, s), 4: (b, g, s, subscription)})
        return self._watch(("address", address, subscription), "address", address, deliver)

    def unsubscribeServiceAddress(self, address: str | None = None,
                                  subscription: str | None = None) -> None:
        self._unwatch(lambda k: k[0] == "address" and (address is None or k[1] == address)
                      and (subscription is None or k[2] == subscription))

    def destroyAgent(self) -> None:
        Agent.destroyAgent(self)
        self._unwatch(lambda k: True)
        Dispatcher()._sources.discard(self)


# --------------------------------------------------------------------------- services

class _Context:
    """What ``currentRequest()``, ``currentResponse()``... return."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __getattr__(self, name: str) -> Any:
        try:
            value = self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(name) from None
        return lambda: value

    def __repr__(self) -> str:
        return f"<{self._fields.get('kind', 'context')} {self._fields.get('conversationId')}>"


class _Suspended(Exception):
    pass


class EndPoint:
    """A proxy for calling a service's methods: ``proxy.method(*args)`` sends a request
    and returns its conversation id at once. False when no service was found."""

    def __init__(self, service: "Service", target: Any, method: str = "") -> None:
        self._service = service
        self._target = target
        self._method = method

    def __bool__(self) -> bool:
        return self._target is not None and _netsvc.is_available(self._target)

    def __getattr__(self, name: str) -> "EndPoint":
        if name.startswith("__"):
            raise AttributeError(name)
        method = f"{self._method}.{name}" if self._method else name
        return EndPoint(self._service, self._target, method)

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        # Keyword arguments are ignored, as in the original.
        if self._target is None:
            raise ServiceUnavailable(46, "Service Unavailable", "netsvc",
                                     "No service was found for this endpoint.")
        return self._service.sendRequest(self._target, self._method, *args)

    def serviceBinding(self) -> Any:
        return self._target if not isinstance(self._target, str) else _netsvc.resolve(self._target)


class Service(Monitor):
    """A service agent: exports methods, sends requests, publishes and monitors reports.

    Subclass it, call ``Service.__init__(self, name)`` and ``self.exportMethod(self.m)``.
    """

    def __init__(self, name: str = "", audience: str = "*",
                 visibility: int = SERVICE_VISIBLE) -> None:
        Monitor.__init__(self)
        self._core = _netsvc.ServiceCore(name, audience, visibility == SERVICE_VISIBLE)
        self._visibility = visibility
        self._methods: dict[str, Callable[..., Any]] = {}
        self._current: _Context | None = None
        self._current_request: dict[str, Any] | None = None
        self._suspended: dict[str, tuple[Any, Callable[..., Any] | None]] = {}
        self._last_request: str | None = None
        self._outcome_cbs: dict[str, tuple[Any, Any]] = {}
        self._request_tokens: dict[str, int] = {}
        self._monitors: dict[tuple[Any, str], int] = {}
        self._passive: dict[tuple[Any, str], Callable[..., Any]] = {}
        d = Dispatcher()
        d._services[self._core.token] = self
        d._sources.add(self)
        if type(self).handleSubscription is not Service.handleSubscription:
            token = self._core.watch_subscriptions_queued()
            d._tokens[token] = _weakly(self, "_subscription_event")

    # -- identity
    def serviceBinding(self) -> Any:
        return self._core.binding()

    def serviceName(self) -> str:
        return self._core.binding().serviceName()

    def serviceAudience(self) -> str:
        return self._core.binding().serviceAudience()

    def serviceAddress(self) -> str:
        return self._core.binding().serviceAddress()

    def agentIdentity(self) -> str:
        return self._core.binding().agentIdentity()

    def processIdentity(self) -> str:
        return self._core.binding().processIdentity()

    def serviceVisibility(self) -> int:
        return self._visibility

    def announceAvailability(self) -> None:
        self._core.announce()
        self._visibility = SERVICE_VISIBLE

    def joinGroup(self, group: str) -> None:
        self._core.join_group(group)

    def leaveGroup(self, group: str) -> None:
        self._core.leave_group(group)

    def destroyAgent(self) -> None:
        """Withdraws the service and cancels everything it registered."""
        Monitor.destroyAgent(self)
        d = Dispatcher()
        for token in list(self._monitors.values()) + list(self._request_tokens.values()):
            _netsvc.cancel(token)
            d._requests.pop(token, None)
            d._tokens.pop(token, None)
        self._monitors.clear()
        self._request_tokens.clear()
        self._outcome_cbs.clear()
        self._core.withdraw()
        d._sources.discard(self)

    withdraw = destroyAgent

    # -- methods
    def exportMethod(self, method: Callable[..., Any], name: str | None = None) -> None:
        """Makes ``method`` callable by requests, under its own name or ``name``."""
        name = name or method.__name__
        self._methods[name] = method
        self._core.export_queued(name)

    def exportedMethods(self) -> list[str]:
        return sorted(self._methods)

    def lookupMethod(self, name: str) -> Callable[..., Any] | None:
        return self._methods.get(name)

    def executeMethod(self, name: str, method: Callable[..., Any], params: list[Any]) -> Any:
        """The override hook: calls ``method(*params)``."""
        return method(*params)

    def invalidMethod(self) -> None:
        raise ServiceFailure(55, "Method Unavailable", "netsvc",
                             "No such method is exported.")

    def abortResponse(self, error: int, description: str, origin: str = "",
                      details: str = "") -> None:
        """Ends the current request with exactly this failure."""
        raise ServiceFailure(error, description, origin, details)

    def _handle_request(self, method: str, args: list[Any], sender: Any, conv: int,
                        responder: Any) -> None:
        cid = f"$ID?{conv}"
        self._current_request = {"responder": responder, "id": cid, "suspended": False}
        self._current = _Context(kind="request", sender=sender, conversationId=cid,
                                 methodName=method, sequenceNumber=0, properties={})
        try:
            fn = self._methods.get(method)
            if fn is None:
                self.invalidMethod()
                return
            lo, hi = _arity(fn)
            if len(args) < lo or (hi is not None and len(args) > hi):
                raise ServiceFailure(56, "Parameters Incorrect", "netsvc",
                                     _arguments_message(lo, hi, len(args)))
            result = self.executeMethod(method, fn, args)
            if self._current_request["suspended"]:
                return
            self._reply(responder, result)
        except SystemExit:
            responder.fail(57, "Application Error", "netsvc", "The service exited.")
            raise
        except BaseException as exc:  # noqa: BLE001 - every request must end
            if responder.pending():
                from ._errors import _failure_fields
                responder.fail(*_failure_fields(exc))
            if isinstance(exc, KeyboardInterrupt):
                raise
        finally:
            self._current_request = None
            self._current = None

    def _reply(self, responder: Any, result: Any) -> None:
        if not responder.pending():
            return
        try:
            responder.respond(result)
        except (TypeError, ValueError, OverflowError) as e:
            responder.fail(52, "Response Encoding Error", "netsvc", str(e))

    def currentRequest(self) -> Any:
        return self._current if self._current and self._current._fields["kind"] == "request" else None

    def currentResponse(self) -> Any:
        return self._current if self._current and self._current._fields["kind"] == "response" else None

    def currentFailure(self) -> Any:
        return self._current if self._current and self._current._fields["kind"] == "failure" else None

    def currentReport(self) -> Any:
        return self._current if self._current and self._current._fields["kind"] == "report" else None

    def failureOccurred(self) -> bool:
        return self.currentFailure() is not None

    def conversationId(self) -> str | None:
        return self._current._fields.get("conversationId") if self._current else None

    # -- delayed responses
    def suspendResponse(self, callback: Callable[..., Any] | None = None) -> str:
        """Parks the current request; ``resumeResponse(id)`` later replies with
        ``callback()``'s value. Returns the conversation id."""
        req = self._current_request
        if req is None:
            raise RuntimeError("suspendResponse outside a request")
        req["suspended"] = True
        self._suspended[req["id"]] = (req["responder"], callback)
        return req["id"]

    def resumeResponse(self, conversationId: str) -> None:
        entry = self._suspended.pop(conversationId, None)
        if entry is None:
            return
        responder, callback = entry

        def job() -> None:
            try:
                result = None if callback is None else _call_fit(
                    callback, {0: (), 1: (conversationId,)})
                self._reply(responder, result)
            except BaseException as exc:  # noqa: BLE001
                from ._errors import _failure_fields
                if responder.pending():
                    responder.fail(*_failure_fields(exc))
                if not isinstance(exc, Exception):
                    raise
        Dispatcher().schedule(job, PRIORITY_JOB)

    def deliverResponse(self, conversationId: str, result: Any) -> None:
        entry = self._suspended.pop(conversationId, None)
        if entry is not None:
            self._reply(entry[0], result)

    def returnResponse(self, result: Any) -> None:
        """Replies to the current request now; what the method returns is then ignored."""
        req = self._current_request
        if req is None:
            raise RuntimeError("returnResponse outside a request")
        req["suspended"] = True
        self._reply(req["responder"], result)

    def cancelResponse(self, conversationId: str, error: int, description: str,
                       origin: str = "", details: str = "") -> None:
        entry = self._suspended.pop(conversationId, None)
        if entry is not None and entry[0].pending():
            entry[0].fail(error, description, origin, details)

    def abandonResponse(self, conversationId: str) -> None:
        """Drops a suspended request: its caller gets 57 (netsvc never leaves a caller
        hanging, unlike the original)."""
        self._suspended.pop(conversationId, None)

    def cancelAllResponses(self, error: int, description: str, origin: str = "",
                           details: str = "") -> None:
        for cid in list(self._suspended):
            self.cancelResponse(cid, error, description, origin, details)

    # -- requests
    def serviceEndPoint(self, target: Any) -> EndPoint:
        """A proxy for a service by name (the first in the registry now) or binding."""
        if isinstance(target, str):
            target = _netsvc.resolve(target)
        return EndPoint(self, target)

    def sendRequest(self, target: Any, method: str, *args: Any) -> str:
        """Sends a request; returns its conversation id at once."""
        if isinstance(target, EndPoint):
            target = target._target
        if target is None:
            raise ServiceUnavailable(46, "Service Unavailable", "netsvc",
                                     "No service was found for this endpoint.")
        token = self._core.send_request(target, method, list(args), None)
        cid = f"$ID?{token}"
        d = Dispatcher()
        d._requests[token] = self
        self._request_tokens[cid] = token
        self._last_request = cid
        return cid

    def _check_last(self, conversationId: str) -> None:
        if conversationId != self._last_request:
            raise RuntimeError("response callbacks must name the most recent request")

    def processResponse(self, callback: Callable[..., Any], conversationId: str) -> None:
        """``callback()``, ``callback(result)`` or ``callback(id, result)`` on success."""
        self._check_last(conversationId)
        _, fail_cb = self._outcome_cbs.get(conversationId, (None, None))
        self._outcome_cbs[conversationId] = (callback, fail_cb)

    def processFailure(self, callback: Callable[..., Any], conversationId: str,
                       timeout: float | None = None) -> None:
        """``callback()``, ``(id)``, ``(error, description, origin, details)`` or
        ``(id, error, description, origin, details)`` on failure; with ``timeout``
        seconds, failure 47 once they pass (the request is then abandoned)."""
        self._check_last(conversationId)
        resp_cb, _ = self._outcome_cbs.get(conversationId, (None, None))
        self._outcome_cbs[conversationId] = (resp_cb, callback)
        if timeout is not None and timeout >= 0:
            self.startTimer(lambda: self._timeout(conversationId, timeout), timeout,
                            f"$RESPONSE-TIMEOUT/{conversationId}")

    def monitorResponse(self, callback: Callable[..., Any], conversationId: str,
                        timeout: float | None = None) -> None:
        """One callback for both: ``callback(result)`` or, on failure, as processFailure."""
        self.processResponse(callback, conversationId)
        self.processFailure(callback, conversationId, timeout)

    def _timeout(self, cid: str, timeout: float) -> None:
        token = self._request_tokens.get(cid)
        if token is not None:
            _netsvc.cancel(token)
            Dispatcher()._requests.pop(token, None)
        self._deliver_failure(cid, (47, "Request Timeout", "netsvc",
                                    f"No response within {timeout} s."))

    def ignoreResponse(self, conversationId: str) -> None:
        self._outcome_cbs.pop(conversationId, None)
        self.cancelTimer(f"$RESPONSE-TIMEOUT/{conversationId}")

    def responsePending(self, conversationId: str) -> bool:
        return conversationId in self._request_tokens

    def cancelRequest(self, conversationId: str, error: int = 48,
                      description: str = "Request Aborted", origin: str = "netsvc",
                      details: str = "") -> None:
        """Abandons a request (its service is told) and delivers this failure locally."""
        token = self._request_tokens.get(conversationId)
        if token is None:
            return
        _netsvc.cancel(token)
        Dispatcher()._requests.pop(token, None)
        Dispatcher().schedule(
            lambda: self._deliver_failure(conversationId, (error, description, origin, details)),
            PRIORITY_JOB)

    def cancelAllRequests(self, error: int = 48, description: str = "Request Aborted",
                          origin: str = "netsvc", details: str = "") -> None:
        for cid in list(self._request_tokens):
            self.cancelRequest(cid, error, description, origin, details)

    def _handle_outcome(self, event: tuple[Any, ...]) -> None:
        cid = f"$ID?{event[1]}"
        if event[0] == "response":
            self._request_tokens.pop(cid, None)
            self.cancelTimer(f"$RESPONSE-TIMEOUT/{cid}")
            resp_cb, _ = self._outcome_cbs.pop(cid, (None, None))
            if resp_cb is None:
                return
            self._current = _Context(kind="response", conversationId=cid,
                                     sender=self._current_sender(cid))
            try:
                _call_fit(resp_cb, {0: (), 1: (event[2],), 2: (cid, event[2])})
            finally:
                self._current = None
        else:
            self._deliver_failure(cid, tuple(event[2:6]))

    def _current_sender(self, cid: str) -> Any:
        return None

    def _deliver_failure(self, cid: str, fields: tuple[Any, ...]) -> None:
        self._request_tokens.pop(cid, None)
        self.cancelTimer(f"$RESPONSE-TIMEOUT/{cid}")
        _, fail_cb = self._outcome_cbs.pop(cid, (None, None))
        if fail_cb is None:
            return
        error, description, origin, details = fields
        self._current = _Context(kind="failure", conversationId=cid, error=error,
                                 description=description, origin=origin, details=details)
        try:
            _call_fit(fail_cb, {0: (), 1: (cid,), 4: fields, 5: (cid, *fields)})
        finally:
            self._current = None

    # -- reports
    def publishReport(self, subject: str, content: Any, lifetime: float = 0) -> None:
        """Publishes: lifetime 0 to current subscribers only (and clears the cached report
        of that subject), N seconds cached for late subscribers, -1 cached for ever."""
        self._core.publish(subject, content, float(lifetime))

    def sendReport(self, subscriber: Any, subject: str, content: Any) -> None:
        """Sends a report to one subscriber only; never cached."""
        self._core.send_report(subscriber, subject, content)

    def expireReports(self, pattern: str, age: float = 0) -> None:
        self._core.expire_reports(pattern, float(age))

    def expireAllReports(self, age: float = 0) -> None:
        self._core.expire_reports("*", float(age))

    def purgeReports(self) -> None:
        self._core.purge_reports()

    def monitorReports(self, callback: Callable[..., Any], target: Any,
                       pattern: str = "*") -> None:
        """``callback(content)``, ``(subject, content)`` or ``(name, subject, content)``
        for each report of ``target`` (a service name: every service of that name, now
        or later; or a binding) whose subject matches ``pattern``."""
        key = (self._target_key(target), pattern)
        if key in self._monitors:
            return
        token = self._core.monitor_queued(target, pattern)
        self._monitors[key] = token
        Dispatcher()._tokens[token] = _weakly(self, "_report_event", callback)

    @staticmethod
    def _target_key(target: Any) -> Any:
        return target if isinstance(target, str) else ("address", target.serviceAddress())

    def ignoreReports(self, target: Any, pattern: str | None = None) -> None:
        """Ends the subscriptions to ``target`` (all of them, or the one of ``pattern``)."""
        t = self._target_key(target)
        for key in [k for k in self._monitors if k[0] == t and (pattern is None or k[1] == pattern)]:
            token = self._monitors.pop(key)
            _netsvc.cancel(token)
            Dispatcher()._tokens.pop(token, None)

    def acceptReports(self, callback: Callable[..., Any], target: Any, subject: str) -> None:
        """Receives targeted reports of this exact subject that match no pattern."""
        self._passive[(self._target_key(target), subject)] = callback

    def unexpectedReport(self, subject: str, content: Any) -> None:
        _log.debug("unexpected report %r", subject)

    def _report_event(self, callback: Callable[..., Any], event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "report":
            _, _, subject, content, publisher, pattern, error = event
            if error is not None:
                _log.warning("a report on %r could not be decoded: %s", subject, error)
                return
            cb = callback
            if pattern is None:
                passive = (self._passive.get((publisher.serviceName(), subject))
                           or self._passive.get((("address", publisher.serviceAddress()), subject)))
                if passive is None:
                    self.unexpectedReport(subject, content)
                    return
                cb = passive
            self._current = _Context(kind="report", publisher=publisher, subject=subject,
                                     content=content, conversationId=None)
            try:
                _call_fit(cb, {1: (content,), 2: (subject, content),
                               3: (publisher.serviceName(), subject, content)})
            finally:
                self._current = None
        elif kind == "publisher":
            _, _, publisher, available = event
            self.handlePublisherNotification(_Context(
                kind="notification", publisher=publisher, subscriber=self.serviceBinding(),
                status=SERVICE_AVAILABLE if available else SERVICE_WITHDRAWN))
        elif kind == "missed":
            _log.warning("%s missed %d reports (coalesced)", self.serviceName() or "a subscriber",
                         event[2])

    def _subscription_event(self, event: tuple[Any, ...]) -> None:
        _, _, subscriber, pattern, status = event
        self.handleSubscription(_Context(kind="subscription", subscriber=subscriber,
                                         subject=pattern, status=status))

    def handleSubscription(self, subscription: Any) -> None:
        """Override: ``subscription.subscriber()``, ``.subject()`` (the pattern) and
        ``.status()`` (SUBSCRIPTION_REQUESTED / SUBSCRIPTION_WITHDRAWN)."""

    def handlePublisherNotification(self, notification: Any) -> None:
        """Override: ``notification.publisher()``, ``.subscriber()``, ``.status()``."""

    def matchSubject(self, pattern: str, subject: str) -> bool:
        return _netsvc.match_subject(pattern, subject)


class LocalService:
    """A synchronous, in-process proxy for the first Python service of that name."""

    def __init__(self, name: str, method: str = "") -> None:
        self._name = name
        self._method = method

    def _service(self) -> Service | None:
        candidates = [s for _, s in sorted(Dispatcher()._services.items())
                      if s.serviceName() == self._name and not s._core.is_withdrawn()]
        return candidates[0] if candidates else None

    def __bool__(self) -> bool:
        return self._service() is not None

    def __getattr__(self, name: str) -> "LocalService":
        if name.startswith("__"):
            raise AttributeError(name)
        return LocalService(self._name, f"{self._method}.{name}" if self._method else name)

    def __call__(self, *args: Any) -> Any:
        service = self._service()
        if service is None:
            raise ServiceUnavailable(46, "Service Unavailable", "netsvc",
                                     f"No Python service named {self._name!r} in this process.")
        fn = service._methods.get(self._method)
        if fn is None:
            raise ServiceFailure(55, "Method Unavailable", "netsvc",
                                 f"{self._name} exports no method {self._method!r}.")
        lo, hi = _arity(fn)
        if len(args) < lo or (hi is not None and len(args) > hi):
            raise ServiceFailure(56, "Parameters Incorrect", "netsvc",
                                 _arguments_message(lo, hi, len(args)))
        return service.executeMethod(self._method, fn, list(args))


# --------------------------------------------------------------------------- exchange

class Exchange(Agent):
    """A message exchange endpoint: ``EXCHANGE_SERVER`` listens, ``EXCHANGE_CLIENT``
    connects. One per group per process."""

    def __init__(self, mode: int, group: str = "", *, tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 tls_server_name: str | None = None, user: str | None = None,
                 password: str | None = None, token: str | None = None,
                 users: str | None = None) -> None:
        """(netsvc additions, keyword only) ``tls_ca``: connect with TLS, trusting this CA
        file (PEM), with ``tls_cert``/``tls_key`` as a client certificate and
        ``tls_server_name`` the name to expect; ``user`` + ``password`` or ``token``: log
        in; ``users``: a users file, so that peers must log in (docs/SECURITY.md)."""
        Agent.__init__(self)
        hook = None
        if type(self).authorise is not Exchange.authorise:
            hook = lambda host: bool(self.authorise(host))  # noqa: E731
        self._core = _netsvc.ExchangeCore(
            mode == EXCHANGE_SERVER, group, hook, tls_ca=tls_ca, tls_cert=tls_cert,
            tls_key=tls_key, tls_server_name=tls_server_name, user=user, password=password,
            token=token, users=users)
        self._group = group
        self._connectors: dict[str, Any] = {}
        d = Dispatcher()
        d._sources.add(self)
        _exchanges.add(self)
        token = self._core.watch_connections_queued()
        self._watch_token = token
        d._tokens[token] = _weakly(self, "_connection_event")

    def listen(self, port: int, host: str = "0.0.0.0", *, tls_cert: str | None = None,
               tls_key: str | None = None, client_ca: str | None = None,
               require_client_cert: bool = False) -> int:
        """Listens for clients on ``port`` (0: a free one) of ``host`` (all interfaces by
        default, as the original); returns the port bound. (netsvc additions) With
        ``tls_cert`` and ``tls_key`` (PEM files) the port is TLS only; ``client_ca``
        verifies client certificates, which ``require_client_cert`` makes mandatory."""
        bound = self._core.listen(f"{host}:{int(port)}", tls_cert=tls_cert, tls_key=tls_key,
                                  client_ca=client_ca,
                                  require_client_cert=require_client_cert)
        return int(bound.rsplit(":", 1)[1])

    def connect(self, host: str, port: int, retryDelay: float = 5.0) -> str:
        """Connects to a server in the background, retrying every ``retryDelay`` seconds
        until it is there and after every loss (negative: one attempt). Returns the
        connection's address."""
        connector = self._core.connect(f"{host}:{int(port)}", float(retryDelay))
        self._connectors[connector.address] = connector
        return connector.address

    def waitSynced(self, address: str, timeout: float = 10.0) -> None:
        """(netsvc addition) Blocks until the connection to ``address`` is linked and the
        server's registry has arrived; raises ConnectionError with the cause otherwise."""
        self._connectors[address].wait_synced(float(timeout))

    def shutdown(self, address: str | None = None, delay: float = 0) -> None:
        """Stops the exchange, flushing its links for ``delay`` seconds (-1: up to 10 s).
        netsvc stops the whole exchange: one connection cannot be stopped on its own."""
        grace = 10.0 if delay is not None and delay < 0 else float(delay or 0.0)
        self._core.shutdown(max(grace, 0.2))
        Dispatcher()._sources.discard(self)
        _netsvc.cancel(self._watch_token)

    def authorise(self, host: str) -> bool:
        """Override: whether to accept a client from ``host`` (its IP address). Runs on a
        runtime thread, not the dispatcher's."""
        return True

    def handleConnection(self, announcement: Any) -> None:
        """Override: ``announcement.group()``, ``.localAddress()``, ``.remoteAddress()``,
        ``.remoteProcess()``, ``.state()`` (CONNECTION_ACTIVE / CONNECTION_INACTIVE)."""

    def _connection_event(self, event: tuple[Any, ...]) -> None:
        _, _, state, group, local, remote, process, reason = event
        if state > CONNECTION_INACTIVE:
            return  # resynced: the original has no such notice
        self.handleConnection(_Context(kind="connection", group=group, localAddress=local,
                                       remoteAddress=remote, remoteProcess=process,
                                       state=state, reason=reason))


_exchanges: weakref.WeakSet[Exchange] = weakref.WeakSet()


def _at_exit() -> None:
    """Leaves cleanly: services withdrawn (peers hear "process exit"), links flushed, and
    then no runtime thread enters Python any more (see src/bridge.rs)."""
    try:
        _netsvc.shutdown_services()
        from . import aio
        for core in [ex._core for ex in list(_exchanges)] + [ex._core for ex in list(aio._live_exchanges)]:
            try:
                core.shutdown(1.0)
            except Exception:  # noqa: BLE001
                pass
    finally:
        _netsvc.finalize()
