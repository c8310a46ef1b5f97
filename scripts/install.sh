#!/usr/bin/env bash
# Installs ocp-recovery into ./.venv from this checkout, with the sandbox's etcd 3.5.
#   --test   also what the test suite needs: Debian's etcd 3.4, Debian trixie's etcd 3.5.16
#            (scripts/fetch-etcd-trixie.sh: fetched once, then cached), the test extras, and a
#            real kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl
#            (scripts/build-kubernetes.sh: built once, then cached), containerd for the
#            sandbox's node,
#            and Debian's Ceph 16 (radosgw, ceph-mon, ceph-osd) for the sandbox's object store.
# Works on a fresh Debian 12 as root; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=false
[ "${1:-}" = "--test" ] && with_tests=true

packages=()
command -v python3 >/dev/null || packages+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
command -v mount >/dev/null || packages+=(mount)
if $with_tests; then
  [ -x /usr/bin/etcd ] && [ -x /usr/bin/etcdctl ] || packages+=(etcd-server etcd-client)
  # The image tests: podman (runc) builds and runs the image on a debootstrap base;
  # kubectl (Debian's kubernetes-client) renders the kustomize manifests.
  command -v podman >/dev/null || packages+=(podman)
  command -v runc >/dev/null || packages+=(runc)
  command -v debootstrap >/dev/null || packages+=(debootstrap)
  command -v kubectl >/dev/null || packages+=(kubernetes-client)
  # promtool (Debian's prometheus) tests the backup alerts (manifests/backup/base).
  command -v promtool >/dev/null || packages+=(prometheus)
  # The sandbox's Kubernetes node (`sandbox up --kubernetes`): containerd and the CNI
  # loopback plugin; gcc builds the pause binary (scripts/build-kubernetes.sh).
  command -v containerd >/dev/null || packages+=(containerd)
  [ -x /usr/lib/cni/loopback ] || packages+=(containernetworking-plugins)
  command -v gcc >/dev/null || packages+=(gcc libc6-dev)
fi
apt_updated=false
apt_update_once() { $apt_updated || apt-get update -qq; apt_updated=true; }
if [ ${#packages[@]} -gt 0 ]; then
  echo "install.sh: apt-get install ${packages[*]}"
  apt_update_once
  # The Debian etcd package would start a system etcd; the sandbox never needs it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  if $with_tests && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi

if $with_tests && ! command -v radosgw >/dev/null; then
  # The sandbox's object store (Ceph RADOS Gateway) runs daemons of its own: no system Ceph
  # service may start. policy-rc.d answering 101 makes the packages' scripts start none.
  ceph_packages=(radosgw ceph-mon ceph-osd ceph-common)
  echo "install.sh: apt-get install --no-install-recommends ${ceph_packages[*]}"
  apt_update_once
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${ceph_packages[@]}" >/dev/null
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now ceph-crash ceph.target ceph-mon.target ceph-osd.target \
      ceph-radosgw.target >/dev/null 2>&1 || true
  fi
fi

if $with_tests && ! grep -qs 'runtime = "runc"' /etc/containers/containers.conf; then
  # crun and the default ulimits fail on this kind of machine; runc with these works.
  mkdir -p /etc/containers
  printf '%s\n' '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]' \
    '[engine]' 'runtime = "runc"' >/etc/containers/containers.conf
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: Python >= 3.11 is required (found $(python3 --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
extras=sandbox
$with_tests && extras=sandbox,test
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]"
if $with_tests; then
  # Assigned first: a failed $(...) inside echo's arguments would not stop set -e.
  etcd_next=$(bash scripts/fetch-etcd-trixie.sh)
  echo "install.sh: etcd 3.5.16 in $etcd_next"
  kube_bin=$(bash scripts/build-kubernetes.sh)
  echo "install.sh: Kubernetes v1.20 binaries in $kube_bin"
fi
echo "install.sh: ocp-recovery installed in $(pwd)/.venv ($(.venv/bin/ocp-recovery --version))"
