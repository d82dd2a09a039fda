#!/usr/bin/env bash
# Builds deploy/docker's Debian-based images (the SuperLink, the Certificate Service, the CPU
# SuperNode) with podman, with no registry pull: the base stands in for node:20-bookworm-slim and
# is made here, a minimal Debian bookworm (mmdebstrap) with this host's Node.js 20 and npm under
# /usr/local like the official image. The Dockerfiles are built as written; only NODE_IMAGE is
# given, as the local base's image ID (a sha256 of its content, so the build stays pinned to one
# exact base). The GPU SuperNode is not built: its base's CUDA packages (NVIDIA's apt repository)
# and its wheelhouse (PyTorch's CUDA wheels for Python 3.12) need hosts this script cannot assume.
#
# The build's own steps run without a network: `npm ci` installs offline from this host's npm
# cache, better-sqlite3's prebuilt addon is the one compiled in this checkout's node_modules, and
# apt-get installs from a local folder of .deb files fetched once from the Debian mirror. What
# needs the mirror (mmdebstrap, the .deb files) is cached in the work folder.
#
# Usage: scripts/build-images.sh [--work DIR] [--store DIR] [--tag PREFIX] [--mirror URL] [--check] IMAGE...
#   IMAGE      superlink, cert-service or supernode (deploy/docker/Dockerfile.IMAGE)
#   --work     cache folder: base rootfs, .deb files, prebuilt addon (default: .tmp/images); one
#              build at a time uses it (a lock), so clones may share one
#   --store    a separate containers storage folder instead of the system's (/var/lib/containers)
#   --tag      image name prefix (default: localhost/pollen); images are PREFIX-IMAGE:VERSION
#   --mirror   the Debian mirror for the base and the .deb files (default: http://deb.debian.org/debian)
#   --check    start each image read-only, without capabilities or network, on throw-away
#              credentials, and wait until its HEALTHCHECK (`pollen ready`) passes; the SuperNode
#              runs on a client kit whose SuperLink is absent, and its Python trains the PyTorch
#              example through the SDK (sdk/python/gpu_check.py, on the CPU)
# Run as root (podman's rootful storage; mmdebstrap).
set -euo pipefail

PODMAN="${PODMAN:-/usr/bin/podman}"
MMDEBSTRAP="${MMDEBSTRAP:-/usr/bin/mmdebstrap}"
DPKG_SCANPACKAGES="${DPKG_SCANPACKAGES:-/usr/bin/dpkg-scanpackages}"

fail() {
  echo "build-images: $*" >&2
  exit 1
}

# crun 1.8 refuses a cgroup v1 host whose cgroup2 hierarchy still holds a controller ("cgroups in
# hybrid mode not supported"): hide that hierarchy in a private mount namespace of our own.
if [[ "$(stat -f -c %T /sys/fs/cgroup)" == tmpfs && -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]]; then
  [[ -z "${BUILD_IMAGES_UNSHARED:-}" ]] || fail "could not hide /sys/fs/cgroup/unified"
  # shellcheck disable=SC2016 # "$0" and "$@" are the inner bash's
  BUILD_IMAGES_UNSHARED=1 exec unshare --mount --propagation private \
    bash -c 'umount /sys/fs/cgroup/unified && exec "$0" "$@"' "${BASH_SOURCE[0]}" "$@"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/.tmp/images"
STORE=""
PREFIX="localhost/pollen"
MIRROR="http://deb.debian.org/debian"
CHECK=0
IMAGES=()

usage() { sed -n '15,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($# > 0)); do
  case "$1" in
  --work) WORK="$(realpath -m "$2")" && shift 2 ;;
  --store) STORE="$(realpath -m "$2")" && shift 2 ;;
  --tag) PREFIX="$2" && shift 2 ;;
  --mirror) MIRROR="$2" && shift 2 ;;
  --check) CHECK=1 && shift ;;
  -h | --help) usage && exit 0 ;;
  superlink | cert-service | supernode) IMAGES+=("$1") && shift ;;
  *) usage >&2 && fail "unknown argument: $1" ;;
  esac
done
((${#IMAGES[@]} > 0)) || { usage >&2 && fail "name an image: superlink, cert-service or supernode"; }
((EUID == 0)) || fail "run as root (podman's rootful storage, mmdebstrap)"

# podman's default limits (a million open files and processes) exceed what crun may set here.
LIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=32768:32768")

# podman also schedules each HEALTHCHECK with a systemd timer; where no systemd runs it says so on
# every start and stop, while `podman healthcheck run` works without one.
podman() {
  local store=()
  [[ -z "$STORE" ]] || store=(--root "$STORE/root" --runroot "$STORE/run")
  "$PODMAN" "${store[@]}" "$@" 2> >(grep -v 'unable to get systemd connection' >&2)
}

NODE_VERSION="$(node --version)"
[[ "$NODE_VERSION" == v20.* ]] || fail "the base needs this host's Node.js 20, found $NODE_VERSION"
VERSION="$(node -p 'require(process.argv[1]).version' "$ROOT/package.json")"
BASE="localhost/pollen-base/node:${NODE_VERSION#v}-bookworm-slim"
mkdir -p "$WORK"
# One build at a time per work folder (clones may share one): the base, the .deb folder and the
# check folders are rewritten in place, and two builds at once would also halve each one's cores.
exec {lock}>"$WORK/lock"
flock -n "$lock" || { echo "build-images: waiting for another build with $WORK" >&2 && flock "$lock"; }

# The base: a minbase bookworm from mmdebstrap (cached as a tarball; it leaves no apt lists or
# .debs behind, and fetches in parallel: about 30 s where debootstrap took two minutes), and the
# host's node and npm.
make_base() {
  if podman image exists "$BASE"; then return; fi
  local tarball="$WORK/bookworm-minbase.tar"
  if [[ ! -f "$tarball" ]]; then
    "$MMDEBSTRAP" --variant=minbase --format=tar bookworm "$tarball.part" "$MIRROR" >"$WORK/mmdebstrap.log" 2>&1 ||
      fail "mmdebstrap failed, see $WORK/mmdebstrap.log"
    mv "$tarball.part" "$tarball"
  fi
  local rootfs="$WORK/base"
  rm -rf "$rootfs" && mkdir -p "$rootfs" && tar -C "$rootfs" -xf "$tarball"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp "$(command -v node)" "$rootfs/usr/local/bin/node"
  cp -r "$(dirname "$(realpath "$(command -v npm)")")/.." "$rootfs/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  tar -C "$rootfs" -c . | podman import --change 'CMD ["node"]' - "$BASE" >/dev/null
  rm -rf "$rootfs"
}

# better-sqlite3's install step looks in npm's _prebuilds cache before downloading: put there the
# addon this checkout compiled, under the name prebuild-install gives the release download.
make_prebuild() {
  local dir="$ROOT/node_modules/better-sqlite3" cache="$WORK/npm/_prebuilds"
  mkdir -p "$cache"
  local name
  name="$(cd "$dir" && npm_config_cache=/root/.npm node -e "
    const pkg = require('./package.json');
    const rc = require('prebuild-install/rc')(pkg);
    const util = require('prebuild-install/util');
    process.stdout.write(require('node:path').basename(util.cachedPrebuild(util.getDownloadUrl({ ...rc, pkg }))));
  ")"
  [[ -f "$cache/$name" ]] || tar -C "$dir" -czf "$cache/$name" build/Release/better_sqlite3.node
  printf 'offline=true\naudit=false\nfund=false\nupdate-notifier=false\n' >"$WORK/npm/npmrc"
}

# The packages a Dockerfile's apt-get install names.
apt_packages() {
  sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1" |
    grep -o 'apt-get install [^&]*' | tr ' ' '\n' | grep -v -e '^-' -e '^apt-get$' -e '^install$' -e '^$' || true
}

# A local apt repository with those packages and what they need beyond the base (fetched once,
# with the base's own apt from the mirror), and the sources file that points apt at it.
make_debs() {
  local packages=("$@") debs="$WORK/debs"
  mkdir -p "$debs/partial"
  local missing=()
  for p in "${packages[@]}"; do compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p"); done
  if ((${#missing[@]} > 0)); then
    podman run --rm "${LIMITS[@]}" --network=host -v "$debs:/var/cache/apt/archives" "$BASE" \
      bash -c "apt-get update -qq && apt-get install -qq --download-only -y --no-install-recommends ${missing[*]}" \
      >"$WORK/apt-download.log" 2>&1 || fail "fetching ${missing[*]} failed, see $WORK/apt-download.log"
  fi
  # The index hashes every .deb (a quarter of a minute with PyTorch's): redone only when the
  # folder holds other files than those it was made from.
  local listed
  listed="$(cd "$debs" && find . -maxdepth 1 -name '*.deb' | sort)"
  if [[ ! -f "$debs/Packages" || "$listed" != "$(cat "$debs/Packages.debs" 2>/dev/null)" ]]; then
    (cd "$debs" && "$DPKG_SCANPACKAGES" --multiversion . /dev/null 2>/dev/null >Packages)
    echo "$listed" >"$debs/Packages.debs"
  fi
  printf 'Types: deb\nURIs: file:/srv/pollen-debs\nSuites: ./\nTrusted: yes\n' >"$WORK/local.sources"
  : >"$WORK/empty.list"
}

build() {
  local image="$1" dockerfile="$ROOT/deploy/docker/Dockerfile.$1"
  local base_id
  base_id="$(podman image inspect --format '{{.Id}}' "$BASE")"
  mapfile -t packages < <(apt_packages "$dockerfile")
  make_debs "${packages[@]}"
  # Every RUN sees the npm cache (an overlay: writes are dropped), the prebuilt addon, npm's
  # offline setting and the local apt repository; none of them ends up in a layer.
  podman build "${LIMITS[@]}" --format docker --network=none --pull=never \
    --build-arg "NODE_IMAGE=$base_id" \
    -v "$HOME/.npm/_cacache:/root/.npm/_cacache:O" \
    -v "$WORK/npm/_prebuilds:/root/.npm/_prebuilds:ro" \
    -v "$WORK/npm/npmrc:/root/.npmrc:ro" \
    -v "$WORK/debs:/srv/pollen-debs:ro" \
    -v "$WORK/local.sources:/etc/apt/sources.list.d/debian.sources:ro" \
    -v "$WORK/empty.list:/etc/apt/sources.list:ro" \
    -f "$dockerfile" -t "$PREFIX-$image:$VERSION" "$ROOT"
}

# Starts IMAGE as the manual says to run it (read-only root, a tmpfs on /tmp, no capabilities, no
# new privileges) with no network at all: its ops listener is on the container's own loopback,
# which is where the HEALTHCHECK asks. The CA, API key and kits are made by the image's own pollen.
check() {
  local image="$1" ref="$PREFIX-$1:$VERSION" dir="$WORK/check-$1" name="pollen-check-$1-$$"
  rm -rf "$dir" && mkdir -p "$dir/state" && chown 10001 "$dir" "$dir/state"
  local as_pollen=(podman run --rm "${LIMITS[@]}" --no-healthcheck --network=none -v "$dir:/out" --entrypoint pollen "$ref")
  local confined=("${LIMITS[@]}" --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges --network=none)
  # The image's HEALTHCHECK command must fail where its service does not run, because nothing
  # answers (UNAVAILABLE), or its passing later would prove nothing.
  local probe unanswered
  mapfile -t probe < <(podman image inspect --format '{{range $i, $a := .Config.Healthcheck.Test}}{{if $i}}{{println $a}}{{end}}{{end}}' "$ref" | sed '/^$/d')
  ((${#probe[@]} > 0)) || fail "$ref has no HEALTHCHECK"
  if unanswered="$(podman run --rm "${confined[@]}" --no-healthcheck --entrypoint "${probe[0]}" "$ref" "${probe[@]:1}" 2>&1)"; then
    fail "$ref: its HEALTHCHECK (${probe[*]}) passes where the service does not run"
  fi
  grep -q '^error\[UNAVAILABLE\]' <<<"$unanswered" ||
    fail "$ref: its HEALTHCHECK (${probe[*]}) failed for another reason than no answer: $unanswered"
  echo "$ref: HEALTHCHECK fails where the service does not run (UNAVAILABLE)"
  "${as_pollen[@]}" cert init -n "Image check" -o /out/ca >/dev/null
  local mounts=(-v "$dir/state:/var/lib/pollen")
  case "$image" in
  cert-service)
    "${as_pollen[@]}" cert api-key -o /out/api_key.txt >/dev/null
    mounts+=(-v "$dir/ca:/ca:ro")
    # Without its admin API key it stops with the catalogue's code instead of serving unguarded.
    local refused
    if refused="$(podman run --rm "${confined[@]}" --no-healthcheck "${mounts[@]}" "$ref" 2>&1)"; then
      fail "$ref started without its API key"
    fi
    grep -q 'FILE_NOT_FOUND.*/run/secrets/api_key' <<<"$refused" ||
      fail "$ref: without its API key it stopped with no FILE_NOT_FOUND naming it: $refused"
    echo "$ref: refuses to start without its API key (FILE_NOT_FOUND)"
    mounts+=(-v "$dir/api_key.txt:/run/secrets/api_key:ro")
    ;;
  superlink)
    "${as_pollen[@]}" package -n localhost -t server -e grpcs://0.0.0.0:9092:9093 -c /out/ca -o /out/kit >/dev/null
    "${as_pollen[@]}" cert site -n localhost -t server --host localhost -c /out/ca -o /out/kit/startup >/dev/null
    mounts+=(-v "$dir/kit:/kit")
    ;;
  supernode)
    # A client kit for a SuperLink that is not there: the node retries it, and its readiness (kit
    # loaded, ClientAppIo listening, work folder writable) does not wait for one.
    "${as_pollen[@]}" package -n site-1 -e grpcs://127.0.0.1:9092 -c /out/ca -o /out/kit >/dev/null
    "${as_pollen[@]}" cert site -n site-1 -t client -c /out/ca -o /out/kit/startup >/dev/null
    mounts+=(-v "$dir/kit:/kit")
    ;;
  esac
  podman run -d --name "$name" "${confined[@]}" --health-interval=disable "${mounts[@]}" "$ref" >/dev/null
  local started=$SECONDS
  until podman healthcheck run "$name" >/dev/null 2>&1; do
    if ((SECONDS - started > 60)) || [[ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ]]; then
      podman logs "$name" >&2 || true
      podman rm -f -t 0 "$name" >/dev/null
      fail "$ref did not become healthy"
    fi
    sleep 1
  done
  echo "$ref: healthy after $((SECONDS - started)) s ($(podman exec "$name" pollen --version))"
  case "$image" in
  superlink)
    podman exec "$name" /opt/venv/bin/python -c 'import numpy, grpc, google.protobuf' ||
      fail "$ref: the ServerApp Python lacks NumPy, grpcio or protobuf"
    ;;
  supernode)
    # The apps' Python as a run gets it: the SDK trains the PyTorch example on the CPU, through a
    # real ClientAppIo, and each reply's arrays are checked bit for bit.
    podman run --rm "${confined[@]}" --no-healthcheck -v "$ROOT/examples/pytorch-mnist:/example:ro" \
      --entrypoint /opt/venv/bin/python "$ref" /opt/pollen/sdk/python/gpu_check.py \
      --example /example --rounds 1 --examples 256 >"$dir/gpu-check.log" 2>&1 || {
      cat "$dir/gpu-check.log" >&2
      fail "$ref: the Python SDK's check (sdk/python/gpu_check.py) failed"
    }
    echo "$ref: $(grep -m1 '^Python ' "$dir/gpu-check.log")"
    ;;
  esac
  podman rm -f -t 5 "$name" >/dev/null
  rm -rf "$dir"
}

make_base
make_prebuild
for image in "${IMAGES[@]}"; do build "$image"; done
if ((CHECK)); then for image in "${IMAGES[@]}"; do check "$image"; done; fi
