#!/usr/bin/env bash
# Set up everything Eventyard needs in ./.venv: idempotent, safe to run again.
#   scripts/setup.sh          the broker and its command line
#   scripts/setup.sh test     also the test and lint tools, the client libraries and kcat
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Eventyard needs Python 3.11 or newer as '$python' (set PYTHON=...)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.installed-${1:-run}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    if [ "${1:-}" = test ]; then
        .venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'
    else
        .venv/bin/python -m pip install -q -c constraints.txt -e .
    fi
    touch "$stamp"
fi

if [ "${1:-}" = test ] && ! command -v kcat >/dev/null; then
    # kcat is a C client the interop tests drive; Debian packages it.
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get install -y -q kcat >/dev/null 2>&1 || {
        $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q kcat >/dev/null
    }
fi
if [ "${1:-}" = test ] && ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    # The projection tests start throwaway PostgreSQL servers (eventyard.testing.postgres): Debian's
    # package puts initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, off the PATH.
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    apt_get="$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get"
    $apt_get install -y -q postgresql >/dev/null 2>&1 || {
        $apt_get update -q >/dev/null && $apt_get install -y -q postgresql >/dev/null
    }
fi
