"""Failures: the original's ``ServiceFailure`` and its subclasses, shared by both APIs."""

from __future__ import annotations

import traceback

__all__ = [
    "ServiceFailure",
    "ServiceUnavailable",
    "AddressInvalid",
    "TransportFailure",
    "AuthenticationFailure",
    "RequestTimeout",
]


class ServiceFailure(Exception):
    """A request's failure, with the original's four fields as attributes.

    ``error`` (int code), ``description``, ``origin`` (``"netsvc"`` for the framework),
    ``details`` (free text, often a traceback). ``kind`` names framework failures
    (``"timeout"``, ``"withdrawn"``, ``"method-unavailable"``...) and is
    ``"application"`` for any other origin.
    """

    def __init__(self, error: int, description: str, origin: str = "", details: str = "",
                 kind: str | None = None) -> None:
        super().__init__(error, description, origin, details)
        self.error = int(error)
        self.description = str(description)
        self.origin = str(origin)
        self.details = str(details)
        self.kind = kind if kind is not None else _kind_of(self.error, self.origin, self.details)

    def __str__(self) -> str:
        text = f"{self.error} {self.description}"
        if self.origin:
            text += f" ({self.origin})"
        if self.details:
            text += f": {self.details}"
        return text

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.error!r}, {self.description!r}, "
                f"{self.origin!r}, {self.details!r})")


class ServiceUnavailable(ServiceFailure):
    """46: no such service."""


class AddressInvalid(ServiceFailure):
    """45: the service address is not valid."""


class TransportFailure(ServiceFailure):
    """The transport failed."""


class AuthenticationFailure(ServiceFailure):
    """Authentication failed."""


class RequestTimeout(ServiceFailure, TimeoutError):
    """47: no response within the timeout."""


WITHDRAWN_DETAILS = "Service was withdrawn before response received."

_KINDS = {
    42: "encoding", 44: "decoding", 46: "service-unavailable", 47: "timeout", 48: "aborted",
    51: "busy", 52: "encoding", 54: "decoding", 55: "method-unavailable",
    56: "bad-arguments", 57: "method-failed",
}


def _kind_of(error: int, origin: str, details: str) -> str:
    if origin != "netsvc":
        return "application"
    if error == 57 and details == WITHDRAWN_DETAILS:
        return "withdrawn"
    return _KINDS.get(error, "other")


def _make_failure(error: int, description: str, origin: str, details: str,
                  kind: str | None = None) -> ServiceFailure:
    cls: type[ServiceFailure] = ServiceFailure
    if origin == "netsvc":
        cls = {46: ServiceUnavailable, 45: AddressInvalid, 47: RequestTimeout}.get(
            error, ServiceFailure)
    return cls(error, description, origin, details, kind)


def _failure_fields(exc: BaseException) -> tuple[int, str, str, str]:
    """The four fields a method's exception is sent as: its own for a ServiceFailure, else
    57 with the traceback in the details."""
    if isinstance(exc, ServiceFailure):
        return (exc.error, exc.description, exc.origin, exc.details)
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (57, "Application Error", "netsvc", details)
