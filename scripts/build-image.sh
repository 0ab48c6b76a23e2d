#!/usr/bin/env bash
# Builds the mcplane container image (deploy/docker/Dockerfile) with podman, on a machine with no
# Docker engine and no registry access: the Python base image is made locally with debootstrap
# (Debian bookworm minbase + python3 + a venv at /opt/py, first on PATH) and imported into podman's
# store, then passed to the Dockerfile as PYTHON_IMAGE.
#
#   bash scripts/build-image.sh [TAG]        # TAG defaults to localhost/mcplane:dev
#
# Both are cached in podman's store, which persists on the machine. The base is tagged with a
# hash of its recipe (and carries it as a label): debootstrap runs only when no image has that
# tag and label. The image carries a hash of its inputs (the Dockerfile and what it copies, and
# the base): an unchanged tree builds nothing, a changed one is built from scratch (see below
# for why podman's layer cache is not used). Needs root (debootstrap, podman's store), podman
# and debootstrap (bash scripts/install-test-deps.sh installs them).
#
# Environment:
#   MCPLANE_BASE_MIRROR     Debian mirror for debootstrap (default: debootstrap's own default)
#   MCPLANE_BASE_REBUILD    set to 1 to rebuild the base even when it is cached
#   MCPLANE_BASE_CA_BUNDLE  CA bundle whose extra certificates the base trusts (default: this
#                           host's system bundle; empty: Debian's certificates only)
#
# The last line of stdout is the image's name; progress goes to stderr.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image="${1:-localhost/mcplane:dev}"

suite=bookworm
variant=minbase
include=python3,python3-venv,ca-certificates
venv=/opt/py
path_env="PATH=$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
recipe_label=io.mcplane.base.recipe

log() { echo "build-image: $*" >&2; }

for tool in podman debootstrap chroot tar sha256sum flock; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool is not installed (bash scripts/install-test-deps.sh installs podman and debootstrap)"
    exit 2
  fi
done
if [ "$(id -u)" != 0 ]; then
  log "needs root (debootstrap, chroot and podman's system store)"
  exit 2
fi

# One build at a time on this machine (two test runs at once would otherwise both debootstrap).
exec 9>"${TMPDIR:-/tmp}/mcplane-build-image.lock"
flock 9

# Certificate authorities the build host trusts beyond Debian's (for example a TLS-inspecting
# proxy's): the base trusts them too, or pip inside the build cannot reach the package index.
host_ca_bundle="${MCPLANE_BASE_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
if [ -n "$host_ca_bundle" ] && [ ! -r "$host_ca_bundle" ]; then
  host_ca_bundle=""
fi
ca_hash="$( [ -n "$host_ca_bundle" ] && sha256sum <"$host_ca_bundle" | cut -c1-16 || echo none)"

# The base: what it is made of decides its tag, so a changed recipe makes a new base.
recipe="v1 $suite $variant $include $venv $path_env ca=$ca_hash $(dpkg --print-architecture 2>/dev/null || uname -m)"
recipe_hash="$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"
base="localhost/mcplane-python-base:$suite-$recipe_hash"

base_is_cached() {
  [ "${MCPLANE_BASE_REBUILD:-0}" != 1 ] \
    && podman image exists "$base" \
    && [ "$(podman image inspect --format "{{index .Labels \"$recipe_label\"}}" "$base" 2>/dev/null)" = "$recipe_hash" ]
}

workdir=""
cleanup() {
  [ -n "$workdir" ] || return 0
  # debootstrap mounts /proc (and more) inside the target while it runs: unmount whatever it
  # left before deleting, and never cross into another file system.
  local mounted
  for mounted in $(findmnt -rn -o TARGET | grep -F "$workdir/" | sort -r || true); do
    umount -l "$mounted" || true
  done
  rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT

build_base() {
  workdir="$(mktemp -d "${TMPDIR:-/tmp}/mcplane-base.XXXXXX")"
  local dir="$workdir"
  log "debootstrap $suite ($variant, $include) into $dir (takes minutes; cached afterwards as $base)"
  local start=$SECONDS
  # shellcheck disable=SC2086  # the mirror is optional: one word or none
  debootstrap --variant="$variant" --include="$include" "$suite" "$dir/rootfs" ${MCPLANE_BASE_MIRROR:-} >"$dir/debootstrap.log" 2>&1 || {
    tail -n 30 "$dir/debootstrap.log" >&2
    log "debootstrap failed"
    return 1
  }
  if [ -n "$host_ca_bundle" ]; then
    # Each certificate of the host's bundle that Debian's bundle lacks becomes a local CA of the
    # base (/usr/local/share/ca-certificates), which update-ca-certificates adds to the bundle.
    mkdir -p "$dir/rootfs/usr/local/share/ca-certificates/build-host"
    awk -v out="$dir/rootfs/usr/local/share/ca-certificates/build-host" '
      /-----BEGIN CERTIFICATE-----/ { pem = "" }
      { pem = pem $0 "\n" }
      /-----END CERTIFICATE-----/ {
        if (FILENAME == ARGV[1]) { known[pem] = 1 }
        else if (!(pem in known)) { n++; printf "%s", pem > (out "/host-" n ".crt"); close(out "/host-" n ".crt") }
      }
      END { print n + 0 }
    ' "$dir/rootfs/etc/ssl/certs/ca-certificates.crt" "$host_ca_bundle" | {
      read -r added
      log "the base trusts $added more certificate authorities of this host"
    }
    chroot "$dir/rootfs" update-ca-certificates >/dev/null
  fi
  chroot "$dir/rootfs" python3 -m venv "$venv"
  rm -rf "$dir/rootfs/var/cache/apt/archives/"*.deb "$dir/rootfs/var/lib/apt/lists/"*
  tar -C "$dir/rootfs" --numeric-owner -c . \
    | podman import --quiet \
      --change "ENV $path_env" \
      --change "LABEL $recipe_label=$recipe_hash" \
      --change 'CMD ["python3"]' \
      --message "debootstrap $suite $variant + $include, venv $venv" \
      - "$base" >/dev/null
  log "base $base made in $((SECONDS - start)) s"
}

if base_is_cached; then
  log "base $base is cached"
else
  build_base
  # Bases of earlier recipes, unless images still build on them.
  for stale in $(podman images --format '{{.Repository}}:{{.Tag}}' "${base%%:*}"); do
    if [ "$stale" != "$base" ]; then podman image rm "$stale" >/dev/null 2>&1 || true; fi
  done
fi

# The image. Podman's layer cache cannot be trusted with this Dockerfile: buildah keys the
# runtime stage's `RUN --mount=type=bind,from=build` on the instruction alone, so after a change
# to src/ it would reuse the install of the previous build's wheels. Instead, the image carries
# a hash of everything it is built from (label io.mcplane.source): the same hash means nothing
# to build; a different one means a build from scratch, with no intermediate images kept.
base_id="$(podman image inspect --format '{{.Id}}' "$base")"
source_hash="$(
  cd "$root"
  {
    echo "v1 base=$base_id"
    find pyproject.toml README.md src deploy/docker -type f \
      ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)"
source_label=io.mcplane.source
previous="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
if [ -n "$previous" ] \
  && [ "$(podman image inspect --format "{{index .Labels \"$source_label\"}}" "$image")" = "$source_hash" ]; then
  log "$image is up to date (source $source_hash)"
  echo "$image"
  exit 0
fi

# The repository root is the build context; the Dockerfile's own .dockerignore says what goes in.
# chroot isolation and the host network because no OCI runtime can start containers here and pip
# needs the package index. Docker format keeps the HEALTHCHECK (OCI image configs have none).
start=$SECONDS
log "building $image from $base (source $source_hash)"
podman build \
  --isolation chroot \
  --network host \
  --format docker \
  --pull=never \
  --no-cache \
  --layers=false \
  --build-arg "PYTHON_IMAGE=$base" \
  --label "$source_label=$source_hash" \
  --ignorefile "$root/deploy/docker/Dockerfile.dockerignore" \
  --file "$root/deploy/docker/Dockerfile" \
  --tag "$image" \
  "$root" >&2
current="$(podman image inspect --format '{{.Id}}' "$image")"
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  # The replaced image, unless something else still names it or builds on it.
  podman image rm "$previous" >/dev/null 2>&1 || true
fi
log "built $image in $((SECONDS - start)) s"
echo "$image"
