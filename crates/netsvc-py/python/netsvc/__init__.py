"""netsvc for Python: the original OSE ``netsvc`` API, and ``netsvc.aio`` for asyncio, on
the Rust netsvc core. Python and Rust processes are peers on one exchange.

    import netsvc

    class Echo(netsvc.Service):
        def __init__(self):
            netsvc.Service.__init__(self, "echo")
            self.exportMethod(self.echo)

        def echo(self, *args):
            return args

    exchange = netsvc.Exchange(netsvc.EXCHANGE_CLIENT)
    exchange.connect("localhost", 11111, 5)
    echo = Echo()
    netsvc.Dispatcher().run()
"""

from __future__ import annotations

import atexit as _atexit

from . import _classic, _netsvc
from ._classic import *  # noqa: F403
from ._classic import _at_exit
from ._errors import (
    AddressInvalid,
    AuthenticationFailure,
    RequestTimeout,
    ServiceFailure,
    ServiceUnavailable,
    TransportFailure,
)

__version__ = "0.2.0"

#: Events the queue between the Rust runtime and the dispatcher holds.
QUEUE_CAPACITY: int = _netsvc.QUEUE_CAPACITY

ServiceBinding = _netsvc.ServiceBinding

__all__ = [n for n in vars(_classic) if not n.startswith("_") and n not in (
    "annotations", "collections", "fnmatch", "heapq", "inspect", "itertools", "logging",
    "os", "threading", "time", "weakref", "functools", "Any", "Callable")] + [
    "ServiceFailure", "ServiceUnavailable", "AddressInvalid", "TransportFailure",
    "AuthenticationFailure", "RequestTimeout", "ServiceBinding", "QUEUE_CAPACITY",
]

_atexit.register(_at_exit)
