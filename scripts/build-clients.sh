#!/usr/bin/env bash
# Build the client programs of clients/ with their own toolchains, into repo-local caches:
#   scripts/build-clients.sh                  every client whose toolchain is on this machine
#   scripts/build-clients.sh java go kafkajs  only those (a missing toolchain is then an error)
# Caches: Maven's repository in .cache/m2, Go's GOPATH, module and build caches under .cache/go,
# npm's cache in .cache/npm. Outputs: clients/java/target/{classes,lib}, .cache/go/bin/eventyard-franz,
# clients/kafkajs/node_modules. A client whose inputs have not changed since its last build is not rebuilt.
# Prints one line per client: "built NAME", "up to date NAME" or "skipped NAME: reason".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# Exit status 0 when every file under the given paths is older than the stamp.
up_to_date() {
    local stamp=$1
    shift
    [ -f "$stamp" ] && [ -z "$(find "$@" -newer "$stamp" -print -quit)" ]
}

build_java() {
    (cd clients/java
        if up_to_date target/.built pom.xml src; then echo "up to date java"; return; fi
        rm -rf target/lib target/.built
        mkdir -p "$root/.cache"
        log="$root/.cache/build-clients-java.log"
        # Maven's console leaves colour escapes even in batch mode: keep its output for a failure.
        if ! mvn -B -Dstyle.color=never -Dmaven.repo.local="$root/.cache/m2" -DskipTests package >"$log" 2>&1; then
            tail -n 60 "$log" >&2
            return 1
        fi
        touch target/.built
        echo "built java")
}

build_go() {
    export GOPATH="$root/.cache/go" GOMODCACHE="$root/.cache/go/mod" GOCACHE="$root/.cache/go/build"
    export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
    (cd clients/go && go build -trimpath -o "$root/.cache/go/bin/eventyard-franz" .)
    echo "built go"
}

build_kafkajs() {
    (cd clients/kafkajs
        if up_to_date node_modules/.built package.json package-lock.json; then echo "up to date kafkajs"; return; fi
        npm ci --no-audit --no-fund --silent --cache "$root/.cache/npm"
        touch node_modules/.built
        echo "built kafkajs")
}

# The tools each client needs, to build and to run.
tools_of() {
    case $1 in
        java) echo "mvn java" ;;
        go) echo "go" ;;
        kafkajs) echo "npm node" ;;
        *) echo "build-clients: unknown client $1 (java, go, kafkajs)" >&2; exit 2 ;;
    esac
}

explicit=$#
[ $# -gt 0 ] || set -- java go kafkajs
status=0
for name in "$@"; do
    missing=""
    for tool in $(tools_of "$name"); do
        command -v "$tool" >/dev/null || missing="$missing $tool"
    done
    if [ -n "$missing" ]; then
        echo "skipped $name: not on PATH:$missing"
        [ "$explicit" -eq 0 ] || status=1
        continue
    fi
    if ! "build_$name"; then
        echo "failed $name" >&2
        status=1
    fi
done
exit $status
