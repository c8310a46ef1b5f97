#!/usr/bin/env bash
# Installs ocp-recovery into ./.venv from this checkout, with the sandbox's etcd 3.5.
#   --test   also what the test suite needs: Debian's etcd 3.4, the test extras, and a real
#            kube-apiserver (scripts/build-kube-apiserver.sh: built once, then cached).
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
fi
if [ ${#packages[@]} -gt 0 ]; then
  echo "install.sh: apt-get install ${packages[*]}"
  apt-get update -qq
  # The Debian etcd package would start a system etcd; the sandbox never needs it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
  if $with_tests && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: Python >= 3.11 is required (found $(python3 --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
extras=sandbox
$with_tests && extras=sandbox,test
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]"
if $with_tests; then
  echo "install.sh: kube-apiserver at $(bash scripts/build-kube-apiserver.sh)"
fi
echo "install.sh: ocp-recovery installed in $(pwd)/.venv ($(.venv/bin/ocp-recovery --version))"
