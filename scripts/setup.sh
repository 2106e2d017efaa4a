#!/usr/bin/env bash
# Install what lineage-hub needs on this machine: the Python virtualenv with the
# project and its dev tools, and the Debian packages the local stack runs.
# Idempotent: a second run only checks. Slow artifacts (Go builds, Maven jars)
# are built by `lineage-hub stack up` into ~/.cache/lineage-hub, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${LINEAGE_HUB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lineage-hub}"
logs="$cache/logs"
# Each slow step tells what it does and how far it got, from the tool's own output
# (an updating line on a terminal, timestamped lines in a log): stack/progress.py,
# standard library only, so it runs before the virtualenv exists.
step() { python3 -m stack.progress "$@"; }

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ] && [ ! -d "$cache/bin" ]; then
  echo "setup: first run on this machine: Debian packages (if missing), the Python" \
    "virtualenv (.venv, pip) and the console's libraries (npm) take a few minutes; then" \
    "\`stack up\` builds the local stack's servers into $cache (the Kubernetes control" \
    "plane and Helm in one Go build, 855 CPU seconds: ~7.5 min on two idle cores; Jaeger" \
    "608, built in the background by \`make demo\`)" \
    "and says what it builds"
fi

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
command -v prometheus >/dev/null || need_apt+=(prometheus)
if ((${#need_apt[@]})); then
  step --what "setup: reading Debian's package lists" --reader apt --log "$logs/setup-apt.log" \
    -- apt-get update
  # The packages' own services are not started (policy-rc.d says no while installing):
  # the local stack runs its own PostgreSQL and Prometheus on loopback, and Debian's
  # Prometheus would listen on every interface with no auth.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ] && [ -w /usr/sbin ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  step --what "setup: installing Debian packages ${need_apt[*]}" --reader apt \
    --log "$logs/setup-apt.log" -- env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -o APT::Status-Fd=1 "${need_apt[@]}" || { [ -z "$made_policy" ] || rm -f "$policy"; exit 1; }
  [ -z "$made_policy" ] || rm -f "$policy"
  if [[ " ${need_apt[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable prometheus prometheus-node-exporter 2>/dev/null || true  # not at boot
  fi
fi

# A first run's longest download, the Go modules of the control plane and Helm (~700 MB),
# runs while pip and npm install; `stack up` then finds them in Go's module cache (the
# same `go list` it plans its build with; two go commands share that cache safely).
go_modules=
if [ ! -d "$cache/bin" ] && command -v go >/dev/null; then
  mkdir -p "$logs"
  echo "setup: downloading the control plane's Go modules meanwhile (log $logs/setup-go-modules.log)"
  (cd stack/controlplane && GOFLAGS=-buildvcs=false GOTOOLCHAIN=local \
    go list -deps -f '{{.ImportPath}}' . tool) >"$logs/setup-go-modules.log" 2>&1 &
  go_modules=$!
fi

if [ ! -f "$stamp" ]; then
  python3 -m venv .venv
  step --what "setup: upgrading pip in .venv" --reader pip --log "$logs/setup-pip.log" \
    -- .venv/bin/pip install --progress-bar off --upgrade pip
  step --what "setup: installing lineage-hub[dev] into .venv (pip)" --reader pip \
    --log "$logs/setup-pip.log" -- .venv/bin/pip install --progress-bar off -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The consumers' compiled hot paths (native/: the lineage warehouse writer's decoder and
# the batch digest; Rust through PyO3, one abi3 wheel), installed into .venv when its
# sources change. cargo builds into the cache, so a new clone compiles only what changed
# (a first build: ~40 s of crates from crates.io).
native_stamp=.venv/.native-$(cat native/Cargo.toml native/Cargo.lock native/pyproject.toml \
  native/lineagehub_native.pyi native/src/*.rs | sha256sum | cut -c1-12)
if [ ! -f "$native_stamp" ]; then
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null; then
    echo "setup: the consumers' compiled hot paths (native/) need Rust's" \
      "cargo, which is neither on PATH nor in ~/.cargo/bin: install it (https://rustup.rs)," \
      "then run this again" >&2
    exit 1
  fi
  step --what "setup: building the consumers' compiled hot paths (native/, cargo)" \
    --reader pip --log "$logs/setup-native.log" \
    -- env CARGO_TARGET_DIR="$cache/native-target" \
    .venv/bin/pip install --progress-bar off ./native
  rm -f .venv/.native-*
  touch "$native_stamp"
fi

# The project's own modules byte-compiled, as the installed wheel in the image has them
# (pip compiles a wheel at install, not an editable install): where PYTHONDONTWRITEBYTECODE
# is set, every stage, service and CLI process the local stack starts would otherwise
# compile them from source at each start (a stage's imports: ~0.1-0.2 s more CPU).
# compileall writes only what changed since its last run; a module edited later is
# compiled in memory until the next run of this script, as before.
.venv/bin/python -m compileall -q lineagehub pipeline_runner consumers gateway operator >/dev/null

# The console's browser libraries (a graph layout engine, a chart library), from npm,
# pinned by gateway/console/package-lock.json; the gateway serves them itself.
console=gateway/console
console_stamp=$console/node_modules/.installed-$(sha256sum $console/package-lock.json | cut -c1-12)
if [ ! -f "$console_stamp" ]; then
  step --what "setup: installing the console's browser libraries (npm ci)" --reader npm \
    --lock $console/package-lock.json --log "$logs/setup-npm.log" \
    -- npm ci --prefix $console --no-audit --no-fund --loglevel=http
  touch "$console_stamp"
fi

if [ -n "$go_modules" ]; then
  if wait "$go_modules"; then
    echo "setup: the control plane's Go modules are downloaded"
  else
    echo "setup: downloading the control plane's Go modules failed (log" \
      "$logs/setup-go-modules.log); \`stack up\` tries again and says why"
  fi
fi
