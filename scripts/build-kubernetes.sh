#!/usr/bin/env bash
# The real Kubernetes binaries the sandbox runs: kube-apiserver (the recovery API server of
# guide 3.4, `snapshot browse`), kube-controller-manager (its namespace and garbage-collector
# controllers delete what a user deletes, which selective restores undo; its job and cronjob
# controllers run the backup CronJob), and for `sandbox up --kubernetes` kube-scheduler,
# kubelet, pause (the pod sandbox image's binary) and a kubectl of the same version (newer
# ones cannot `create job --from` a batch/v1beta1 CronJob).
# v1.20 built from Debian 12's `kubernetes` source package (it vendors every Go module, so the
# build needs no Go proxy). Cached: when every binary is there and runs, nothing is done.
# Prints the directory holding them. Root (apt-get), about 3 GB of disk and 6-9 minutes the
# first time.
#   usage: build-kubernetes.sh [CACHE_DIR]   (default $KUBE_APISERVER_CACHE or
#                                              ~/.cache/ocp-recovery)
set -euo pipefail
cache=${1:-${KUBE_APISERVER_CACHE:-$HOME/.cache/ocp-recovery}}
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
missing=()
for c in "${components[@]}"; do
  "$cache/bin/$c" --version >/dev/null 2>&1 || "$cache/bin/$c" version --client >/dev/null 2>&1 \
    || missing+=("$c")
done
if [ ${#missing[@]} -eq 0 ] && [ -x "$cache/bin/pause" ]; then
  echo "$cache/bin"; exit 0
fi
mkdir -p "$cache/bin" "$cache/src"
build=$(mktemp -d "$cache/src/kubernetes.XXXXXX")
trap 'rm -rf "$build"' EXIT
log=$cache/build-kubernetes.log
echo "build-kubernetes.sh: building ${missing[*]:-pause} from Debian's source (log: $log)" >&2

# A private apt state holding only deb-src lines for the machine's own archives, so the
# system's apt configuration is not touched.
mkdir -p "$build/apt/sources" "$build/apt/lists/partial"
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] && sed 's/^Types: deb$/Types: deb-src/' "$f" >"$build/apt/sources/$(basename "$f")"
done
[ -f /etc/apt/sources.list ] && sed -n 's/^deb /deb-src /p' /etc/apt/sources.list \
  >"$build/apt/sources/main.list"
apt_private=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$build/apt/sources"
             -o "Dir::State::Lists=$build/apt/lists")
{
  apt-get "${apt_private[@]}" update
  (cd "$build" && apt-get "${apt_private[@]}" source --download-only kubernetes)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    golang-go make rsync golang-github-modern-go-reflect2-dev gcc libc6-dev
} >"$log" 2>&1 || { echo "build-kubernetes.sh: fetching failed, see $log" >&2; exit 1; }

cd "$build"
tar xzf kubernetes_*.orig.tar.gz
cd "$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -1)"
# reflect2 1.0.1 (vendored) breaks with Go 1.18+; Debian ships the compatible 1.0.2.
reflect2=vendor/github.com/modern-go/reflect2
rm -rf "$reflect2" && mkdir -p "$reflect2"
find -L /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 \
  \( -name '*.go' -o -name '*.s' \) -exec cp -L {} "$reflect2/" \;
mkdir -p .gopath/src/k8s.io && ln -sfn ../../.. .gopath/src/k8s.io/kubernetes
if [ ${#missing[@]} -gt 0 ] && ! GOPATH=$PWD/.gopath CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor \
    make WHAT="${missing[*]/#/cmd/}" >>"$log" 2>&1; then
  echo "build-kubernetes.sh: the build failed, see $log" >&2; exit 1
fi
for c in "${missing[@]}"; do
  install -m 0755 "_output/bin/$c" "$cache/bin/$c.new"
  mv "$cache/bin/$c.new" "$cache/bin/$c"
done
# The pod sandbox ("pause") image's one binary, from the same source: the sandbox's
# containerd can pull nothing.
gcc -Os -static -DVERSION=v1.20 -o "$cache/bin/pause.new" build/pause/linux/pause.c >>"$log" 2>&1 \
  || { echo "build-kubernetes.sh: building pause failed, see $log" >&2; exit 1; }
mv "$cache/bin/pause.new" "$cache/bin/pause"
echo "$cache/bin"
