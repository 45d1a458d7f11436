"""Completes asyncio futures for the Rust side (called on the loop's thread)."""

from __future__ import annotations

import asyncio
from typing import Any


def _settle(fut: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    if fut.done():  # cancelled meanwhile
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
