#!/usr/bin/env bash
# Builds and tests the Python package: a venv under target/py-venv (from $PYTHON, default
# the python3 on PATH), the pinned tools, the netsvc CLI (the hub the tests start), the
# package itself (maturin develop), then pytest. Needs only the Rust toolchain and Python
# >= 3.11 with venv and pip; the registries give the rest.
set -euo pipefail
crate="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$crate/../.." && pwd)"
cd "$repo"
python="${PYTHON:-python3}"
venv="$repo/target/py-venv"

"$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { echo "error: $python is older than Python 3.11" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    maturin==1.16.0 pytest==9.2.0 pytest-asyncio==1.5.0 pytest-timeout==2.4.0 hypothesis==6.170.17

echo "== cargo build -p netsvc-cli (the hub binary the tests run)"
cargo build -p netsvc-cli --locked

echo "== maturin develop (netsvc into $venv)"
(cd "$crate" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --locked --quiet)

echo "== pytest"
export NETSVC_BIN="$repo/target/debug/netsvc"
cd "$crate"
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here.
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
fi
exit "$rc"
