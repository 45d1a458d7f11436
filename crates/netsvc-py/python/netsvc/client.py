"""A blocking facade, for scripts and threads that have no dispatcher or event loop (the
original's ``netsvc.client``): each call blocks the calling thread (without the GIL) until
the response, and raises ``ServiceFailure`` on failure.

    from netsvc import client

    client.connect("127.0.0.1:11111")
    echo = client.RemoteService("echo", timeout=5)
    print(echo.echo("hi"))
"""

from __future__ import annotations

from typing import Any, Callable

from . import _netsvc
from ._errors import ServiceFailure, ServiceUnavailable

__all__ = ["connect", "RemoteService", "Registry", "ServiceFailure", "ServiceUnavailable"]

_exchanges: dict[str, Any] = {}


def connect(address: str, *, group: str = "", retry: float = 1.0, timeout: float = 10.0) -> None:
    """Links this process to the hub at ``address`` (``HOST:PORT`` or ``unix:PATH``) and
    returns once linked and synced; raises ConnectionError with the cause otherwise. The
    link stays up (and is re-established after a loss) until the process exits."""
    exchange = _exchanges.get(group)
    if exchange is None:
        exchange = _exchanges[group] = _netsvc.ExchangeCore(False, group, None)
    exchange.connect(address, float(retry)).wait_synced(float(timeout))


class RemoteService:
    """Calls a service's methods synchronously: ``RemoteService("echo").echo(1, 2)``."""

    def __init__(self, target: Any, timeout: float | None = 30.0, method: str = "") -> None:
        self._target = target
        self._timeout = timeout
        self._method = method

    def __bool__(self) -> bool:
        return bool(_netsvc.is_available(self._target))

    def __getattr__(self, name: str) -> "RemoteService":
        if name.startswith("__"):
            raise AttributeError(name)
        method = f"{self._method}.{name}" if self._method else name
        return RemoteService(self._target, self._timeout, method)

    def __call__(self, *args: Any) -> Any:
        return _netsvc.call_blocking(self._target, self._method, list(args), self._timeout)


class Registry:
    """Immediate lookups: ``Registry().locateService("echo")`` is the binding a call would
    go to, or None."""

    def locateService(self, service: str, group: str | None = None,
                      filter: Callable[[Any], bool] | None = None) -> Any:  # noqa: A002
        candidates = _netsvc.lookup_group(group) if group else _netsvc.lookup_name(service)
        for binding in candidates:
            if binding.serviceName() == service and (filter is None or filter(binding)):
                return binding
        return None
