#!/usr/bin/env bash
# Install what lineage-hub needs on this machine: the Python virtualenv with the
# project and its dev tools, and the Debian packages the local stack runs.
# Idempotent: a second run only checks. Slow artifacts (Go builds, Maven jars)
# are built by `lineage-hub stack up` into ~/.cache/lineage-hub, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v go >/dev/null || need_apt+=(golang)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null || need_apt+=(postgresql-client)
# The console's browser tests drive Debian's headless Chromium.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setup: creating .venv and installing lineage-hub[dev]"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The console's browser libraries (a graph layout engine, a chart library), from npm,
# pinned by gateway/console/package-lock.json; the gateway serves them itself.
console=gateway/console
console_stamp=$console/node_modules/.installed-$(sha256sum $console/package-lock.json | cut -c1-12)
if [ ! -f "$console_stamp" ]; then
  echo "setup: installing the console's browser libraries (npm ci)"
  (cd $console && npm ci --no-audit --no-fund --loglevel=error)
  touch "$console_stamp"
fi
