"""Fixtures: the real `netsvc` hub binary on free loopback ports, and Python processes."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

CRATE = Path(__file__).resolve().parent.parent
REPO = CRATE.parent.parent
EXAMPLES = CRATE / "examples"


def netsvc_bin() -> str:
    path = os.environ.get("NETSVC_BIN") or str(REPO / "target" / "debug" / "netsvc")
    if not Path(path).exists():
        pytest.fail(f"the netsvc binary is not at {path}: cargo build -p netsvc-cli (or set NETSVC_BIN)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process whose output lines are read in the background, so a test can wait
    for a given line without sleeping."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.args = args
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=full_env)
        self.lines: "queue.Queue[tuple[str, str | None]]" = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = []
        for name, stream, sink in (("out", self.p.stdout, self.out), ("err", self.p.stderr, self.err)):
            t = threading.Thread(target=self._pump, args=(name, stream, sink), daemon=True)
            t.start()
            self.threads.append(t)

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        for t in self.threads:
            t.join(5)
        for stream in (self.p.stdin, self.p.stdout, self.p.stderr):
            if stream is not None:
                stream.close()

    def _pump(self, name: str, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))
            self.lines.put((name, line.rstrip("\n")))
        self.lines.put((name, None))

    def wait_line(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        ended = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.args}: no line with {needle!r} in {timeout} s;\n"
                                     f"stdout: {self.out}\nstderr: {self.err}")
            try:
                _, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                ended += 1
                if ended == 2:
                    raise AssertionError(f"{self.args} ended (rc {self.p.wait()}) without {needle!r};\n"
                                         f"stdout: {self.out}\nstderr: {self.err}")
                continue
            if needle in line:
                return line

    def signal(self, sig: int) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                return self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
        return self.p.wait()


class Procs:
    def __init__(self) -> None:
        self.all: list[Proc] = []

    def start(self, args: list[str], env: dict[str, str] | None = None) -> Proc:
        p = Proc(args, env)
        self.all.append(p)
        return p

    def python(self, script: str | Path, *args: str, env: dict[str, str] | None = None) -> Proc:
        return self.start([sys.executable, str(script), *args], env)

    def hub(self, port: int | None = None) -> tuple[Proc, str]:
        p = self.start([netsvc_bin(), "exchange", "--listen", f"127.0.0.1:{port or 0}"])
        line = p.wait_line("listening on")
        return p, line.split("listening on ", 1)[1].split()[0]

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([netsvc_bin(), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    yield ps
    for p in reversed(ps.all):
        p.close()


@pytest.fixture
def hub(procs: Procs) -> str:
    """A hub on a free loopback port; its address."""
    return procs.hub()[1]
