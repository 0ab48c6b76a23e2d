#!/usr/bin/env bash
# Installs what the test suite needs beyond the Python package: Node 22 and the pinned official
# MCP conformance harnesses (into .tools/, which git ignores), and starts Redis and PostgreSQL
# when they are installed but not running.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools/alpha" "$tools/stable"

install_npm() {  # dir, packages...
  local dir="$1"; shift
  local want="$*"
  if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$want" ]; then return; fi
  (cd "$dir" && [ -f package.json ] || echo '{"private":true}' > package.json)
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$@" >/dev/null
  echo "$want" > "$dir/.installed"
}

install_npm "$tools/alpha" node@22 @modelcontextprotocol/conformance@0.2.0-alpha.12 @modelcontextprotocol/server-everything
install_npm "$tools/stable" @modelcontextprotocol/conformance@0.1.16

node22="$tools/alpha/node_modules/node/bin/node"
if ! "$node22" --version | grep -q '^v22\.'; then
  echo "Node 22 did not install under $tools/alpha" >&2
  exit 1
fi

# Services used by later layers' tests: start them if they are installed and not answering.
if command -v redis-server >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

# --- deploy/ tests: promtool (Debian package `prometheus`) for `promtool check/test rules` -----
# tests/deploy/test_prometheus.py skips without promtool, and fails without it under CI.
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt_as=""
  if [ "$(id -u)" != 0 ]; then apt_as="sudo -n"; fi
  apt_install="$apt_as env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus"
  if ! $apt_install >/dev/null 2>&1; then
    $apt_as apt-get update -qq >/dev/null 2>&1 || true
    $apt_install >/dev/null 2>&1 \
      || echo "warning: could not install promtool (apt-get install prometheus); deploy rule tests will skip" >&2
  fi
fi
# --- end deploy/ block ---------------------------------------------------------------------------

# --- scale test bed: nginx (Debian package `nginx`) as the load balancer of scripts/testbed.py ---
# The test bed runs its own nginx (generated config, unprivileged port) as a child process;
# it does not use the package's service.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && command -v apt-get >/dev/null 2>&1; then
  apt_as=""
  if [ "$(id -u)" != 0 ]; then apt_as="sudo -n"; fi
  apt_install="$apt_as env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx"
  if ! $apt_install >/dev/null 2>&1; then
    $apt_as apt-get update -qq >/dev/null 2>&1 || true
    $apt_install >/dev/null 2>&1 \
      || echo "warning: could not install nginx (apt-get install nginx); test bed tests will skip" >&2
  fi
fi
# --- end test bed block --------------------------------------------------------------------------

echo "test dependencies ready: node $("$node22" --version), conformance 0.2.0-alpha.12 and 0.1.16"

# --- container image: podman and debootstrap (Debian packages) for tests/deploy/test_image.py ----
# scripts/build-image.sh makes a Debian base with debootstrap and builds deploy/docker/Dockerfile
# with podman; the test runs the image's root file system with chroot. It skips without them, and
# fails without them under CI.
if { ! command -v podman >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; } \
  && command -v apt-get >/dev/null 2>&1; then
  apt_as=""
  if [ "$(id -u)" != 0 ]; then apt_as="sudo -n"; fi
  apt_install="$apt_as env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman debootstrap"
  if ! $apt_install >/dev/null 2>&1; then
    $apt_as apt-get update -qq >/dev/null 2>&1 || true
    $apt_install >/dev/null 2>&1 \
      || echo "warning: could not install podman and debootstrap (apt-get install); image tests will skip" >&2
  fi
fi
# --- end container image block -------------------------------------------------------------------

# --- interop clients: outside MCP clients for tests/interop/ (one prefix each) ---------------------
# The official TypeScript SDK client and both MCP Inspector CLIs, pinned, each in its own prefix
# under .tools/interop/ (their dependency trees differ: the Inspector 2.x is built on the SDK 2.x).
# They run on the Node 22 installed above (the Inspector 2.x needs >= 22.19). tests/interop/ skips
# without them, and fails without them under CI.
interop="$tools/interop"
mkdir -p "$interop/ts" "$interop/inspector-0.15" "$interop/inspector-2.12"
install_npm "$interop/ts" @modelcontextprotocol/sdk@1.32.2
install_npm "$interop/inspector-0.15" @modelcontextprotocol/inspector@0.15.0
PATH="$(dirname "$node22"):$PATH" install_npm "$interop/inspector-2.12" @modelcontextprotocol/inspector@2.12.0
# --- end interop clients block -------------------------------------------------------------------

# --- OAuth test identity provider: oidc-provider for tests/oauth/ (own prefix) ---------------------
# A certified OpenID Connect provider, pinned, run on the Node 22 above by tests/oauth/idp/idp.mjs.
# tests/oauth/ skips without it, and fails without it under CI.
mkdir -p "$tools/oauth"
PATH="$(dirname "$node22"):$PATH" install_npm "$tools/oauth" oidc-provider@9.13.3
# --- end OAuth block -------------------------------------------------------------------------------

# GitHub's published OpenAPI document for tests/openapi/test_github.py and bench/openapi.py (own prefix).
mkdir -p "$tools/openapi"
install_npm "$tools/openapi" @octokit/openapi@23.0.2

# --- OAuth browser login: Debian's Chromium and playwright-core for tests/oauth/server/ ------------
# The consent page and the provider's sign-in driven by a real browser: playwright-core (pinned, no
# browser download of its own) drives Debian's Chromium at /usr/bin/chromium. The test skips
# without them, and fails without them under CI.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  apt_as=""
  if [ "$(id -u)" != 0 ]; then apt_as="sudo -n"; fi
  apt_install="$apt_as env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium"
  if ! $apt_install >/dev/null 2>&1; then
    $apt_as apt-get update -qq >/dev/null 2>&1 || true
    $apt_install >/dev/null 2>&1 \
      || echo "warning: could not install chromium (apt-get install chromium); the browser login test will skip" >&2
  fi
fi
mkdir -p "$tools/playwright"
PATH="$(dirname "$node22"):$PATH" install_npm "$tools/playwright" playwright-core@1.65.1
# --- end OAuth browser block -----------------------------------------------------------------------
