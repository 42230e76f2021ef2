#!/usr/bin/env bash
# Fetch the reference Apache Kafka broker's jars from Maven Central into .cache/kafka/<version>/libs,
# once: a second run finds them and does nothing. Prints the libs directory on stdout.
#   scripts/fetch-kafka.sh            the version pinned in tools/kafka-reference/pom.xml
#   scripts/fetch-kafka.sh 4.1.1      another 4.x version (KAFKA_VERSION=... works too)
# Maven's own repository goes to .cache/m2, so a CI cache of .cache/ keeps both.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pom=tools/kafka-reference/pom.xml

die() {
    echo "fetch-kafka: $*" >&2
    exit 1
}

pinned=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$pom" | head -n 1)
version=${1:-${KAFKA_VERSION:-$pinned}}
[ -n "$version" ] || die "no Kafka version pinned in $pom"
libs=.cache/kafka/$version/libs

if [ -f "$libs/.complete" ]; then
    echo "$root/$libs"
    exit 0
fi

# The broker needs Java 17 or newer (Kafka 4.x); JAVA_HOME wins over the PATH, as for Maven.
java=java
[ -n "${JAVA_HOME:-}" ] && java=$JAVA_HOME/bin/java
command -v "$java" >/dev/null ||
    die "java not found: Kafka $version needs a JDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless), on the PATH or as JAVA_HOME"
java_major=$("$java" -version 2>&1 | sed -n 's/.*version "\(1\.\)\{0,1\}\([0-9]*\).*/\2/p' | head -n 1)
[ "${java_major:-0}" -ge 17 ] ||
    die "Kafka $version needs Java 17 or newer; $java is Java ${java_major:-unknown} (set JAVA_HOME)"
command -v mvn >/dev/null ||
    die "mvn not found: fetching Kafka's jars needs Maven 3.6 or newer (Debian: apt-get install maven)"

echo "fetch-kafka: resolving org.apache.kafka:kafka_2.13:$version from Maven Central..." >&2
mkdir -p ".cache/kafka/$version" .cache/m2
# Copy into a scratch directory and move it into place whole, so that an interrupted or concurrent
# run never leaves a half-filled libs directory behind.
scratch=$(mktemp -d ".cache/kafka/$version/libs.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
log=.cache/kafka/$version/maven.log
if ! mvn -q -B -f "$pom" \
    -Dmaven.repo.local="$root/.cache/m2" \
    -Dkafka.version="$version" \
    dependency:copy-dependencies -DoutputDirectory="$root/$scratch" >"$log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$log" >&2  # Maven's output without its colour codes
    die "Maven could not resolve Kafka $version (output above, also in $log); is Maven Central reachable?"
fi
[ -f "$scratch/kafka_2.13-$version.jar" ] || die "Maven ran but kafka_2.13-$version.jar is missing"
touch "$scratch/.complete"
if ! mv -T "$scratch" "$libs" 2>/dev/null; then
    [ -f "$libs/.complete" ] || die "could not move the jars into $libs"  # another run won the race
fi
echo "fetch-kafka: $(find "$libs" -name '*.jar' | wc -l) jars in $libs" >&2
echo "$root/$libs"
