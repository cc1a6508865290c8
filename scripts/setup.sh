#!/usr/bin/env bash
# Sets up everything txmon needs on a fresh machine: redis-server, docker-compose, a virtualenv with the CPU
# build of torch, and the project with its dev extras. Safe to run again (it skips what is there).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}  # other specs pull several GB of CUDA wheels

# System packages, checked on every run (before the stamp check below): redis-server for the tests'
# embedded Redis, docker-compose (Debian's, v1) so tests/test_deploy.py can validate docker-compose.yml
# with `docker-compose config` without a Docker engine. --no-install-recommends: docker-compose
# recommends docker.io, the engine, which nothing here uses.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: ${missing[*]} missing; install (e.g. sudo apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

stamp="$VENV/.txmon-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing $TORCH_SPEC, then txmon[dev]"
  "$PY" -m pip install -q "$TORCH_SPEC"
  "$PY" -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

# The embedded broker: Apache Kafka's jars from Maven Central into a versioned folder, ~/.cache/txmon/kafka/<version>
# (TXMON_KAFKA_HOME), skipped when there. Without Java 17+ or Maven, txmon falls back
# to the Tansu broker (TXMON_EMBEDDED_BROKER=auto) and says so here.
if ! "$PY" -m txmon.embedded check-kafka >/dev/null 2>&1; then
  if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
    "$PY" -m txmon.embedded install-kafka
  else
    echo "setup: $("$PY" -m txmon.embedded check-kafka 2>&1)" >&2
    echo "setup: no Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven), so the embedded broker" \
         "is Tansu, the fallback (docs/tansu.md)" >&2
  fi
fi
