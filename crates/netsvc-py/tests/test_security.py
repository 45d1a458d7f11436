"""TLS and logins from Python, against the real hub binary and between Python processes:
the keyword arguments of ``Exchange`` and ``listen`` (docs/PYTHON.md, docs/SECURITY.md)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import netsvc.aio as aio
from conftest import Procs, free_port, netsvc_bin


def certificates(dir: Path) -> tuple[str, str, str]:
    """A CA and a certificate for 127.0.0.1 it signs, made with the openssl command:
    (ca, cert, key) paths."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make test certificates (apt install openssl)")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=dir, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=test CA", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=127.0.0.1", "-keyout", "hub.key", "-out", "hub.csr")
    (dir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "hub.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "hub.pem")
    return str(dir / "ca.pem"), str(dir / "hub.pem"), str(dir / "hub.key")


def users_file(procs: Procs, dir: Path, password: str) -> str:
    r = subprocess.run([netsvc_bin(), "passwd"], input=password + "\n", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    path = dir / "users.toml"
    path.write_text(f'[users.alice]\npassword_hash = "{r.stdout.strip()}"\n')
    return str(path)


def tls_hub(procs: Procs, cert: str, key: str, users: str) -> str:
    p = procs.start([netsvc_bin(), "exchange", "--listen", "127.0.0.1:0",
                     "--tls-cert", cert, "--tls-key", key, "--users", users])
    line = p.wait_line("listening on")
    return line.split("listening on ", 1)[1].split()[0]


def test_aio_logs_in_over_tls_and_a_wrong_password_is_refused(procs: Procs, tmp_path: Path) -> None:
    ca, cert, key = certificates(tmp_path)
    users = users_file(procs, tmp_path, "s3cret-pw")
    hub = tls_hub(procs, cert, key, users)

    async def main() -> None:
        ex = aio.Exchange.client(tls_ca=ca, user="alice", password="s3cret-pw")
        try:
            await ex.connect(hub, timeout=20)
            svc = aio.Service("py-tls")

            @svc.export
            async def hello(who: str) -> str:
                return f"hello {who}"

            # A Rust client through the same TLS hub, with its own login; the service may
            # reach the hub's registry a moment after it is made (46 until then).
            for _ in range(50):
                r = await asyncio.to_thread(
                    subprocess.run,
                    [netsvc_bin(), "call", "--connect", hub, "--tls-ca", ca, "--user",
                     "alice", "--wait", "20", "py-tls", "hello", '"rust"'],
                    capture_output=True, text=True, timeout=60,
                    env={"NETSVC_PASSWORD": "s3cret-pw", "PATH": "/usr/bin:/bin"})
                if '"error":46' not in r.stderr:
                    break
                await asyncio.sleep(0.1)
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == '"hello rust"'
        finally:
            await ex.shutdown()

    asyncio.run(main())

    # The wrong password, in a process of its own (one exchange per group per process):
    # refused at once, not retried until the timeout (each retry would count towards the
    # hub's lockout of the address).
    script = f"""
import asyncio, time, netsvc.aio as aio
async def main():
    ex = aio.Exchange.client(tls_ca={ca!r}, user="alice", password="wrong")
    started = time.monotonic()
    try:
        await ex.connect({hub!r}, retry=0.1, timeout=20)
        print("connected")
    except ConnectionError as e:
        print("refused:", e)
    print("took", time.monotonic() - started)
asyncio.run(main())
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "refused:" in r.stdout and "not authorised" in r.stdout, (r.stdout, r.stderr)
    assert "wrong" not in r.stdout.replace("password=\"wrong\"", "")
    took = float(r.stdout.rsplit("took", 1)[1])
    assert took < 5, r.stdout


def test_a_wrong_password_fails_the_classic_connect_at_once(procs: Procs, tmp_path: Path) -> None:
    ca, cert, key = certificates(tmp_path)
    hub = tls_hub(procs, cert, key, users_file(procs, tmp_path, "s3cret-pw"))
    host, port = hub.rsplit(":", 1)
    script = f"""
import time, netsvc
ex = netsvc.Exchange(netsvc.EXCHANGE_CLIENT, tls_ca={ca!r}, user="alice", password="typo")
address = ex.connect({host!r}, {port}, 0.1)
started = time.monotonic()
try:
    ex.waitSynced(address, 20)
    print("connected")
except ConnectionError as e:
    print("refused:", e)
print("took", time.monotonic() - started)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "refused:" in r.stdout and "not authorised" in r.stdout, (r.stdout, r.stderr)
    took = float(r.stdout.rsplit("took", 1)[1])
    assert took < 5, r.stdout
    # One typo did not lock the address out: the right password still gets in.
    ok = subprocess.run(
        [netsvc_bin(), "services", "--connect", hub, "--tls-ca", ca, "--user", "alice"],
        capture_output=True, text=True, timeout=60,
        env={"NETSVC_PASSWORD": "s3cret-pw", "PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr


def test_a_python_server_listens_with_tls_and_users(procs: Procs, tmp_path: Path) -> None:
    ca, cert, key = certificates(tmp_path)
    users = users_file(procs, tmp_path, "pw-for-alice")
    port = free_port()
    script = f"""
import netsvc
class Echo(netsvc.Service):
    def __init__(self):
        netsvc.Service.__init__(self, "py-echo")
        self.exportMethod(self.echo)
    def echo(self, x):
        return x
ex = netsvc.Exchange(netsvc.EXCHANGE_SERVER, users={users!r})
ex.listen({port}, "127.0.0.1", tls_cert={cert!r}, tls_key={key!r})
Echo()
print("listening", flush=True)
netsvc.Dispatcher().run()
"""
    server = procs.start([sys.executable, "-c", script])
    server.wait_line("listening")
    address = f"127.0.0.1:{port}"
    env = {"NETSVC_PASSWORD": "pw-for-alice", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([netsvc_bin(), "call", "--connect", address, "--tls-ca", ca,
                        "--user", "alice", "py-echo", "echo", "42"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"
    # Plaintext to the TLS port, and no login: each refused with its reason.
    r = procs.cli("services", "--connect", address, "--wait", "5")
    assert r.returncode == 2 and "TLS" in r.stderr, r.stderr
    r = procs.cli("services", "--connect", address, "--tls-ca", ca, "--wait", "5")
    assert r.returncode == 2 and "not authorised" in r.stderr, r.stderr


def test_bad_security_arguments_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="password"):
        aio.Exchange.client(group="bad1", user="alice")
    with pytest.raises(ValueError, match="tls_ca"):
        aio.Exchange.client(group="bad2", tls_ca=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="users"):
        aio.Exchange.server(group="bad3", users=str(tmp_path / "missing.toml"))
