# Sourced by the scripts that fetch from Debian. debian_mirror prints the machine's own Debian
# mirror (the only one that may be reachable): the first non-security URI of its deb822
# sources, else of the classic sources.list, else deb.debian.org.
debian_mirror() {
  local mirror
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v -- '-security' | head -1 || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / && $2 !~ /-security/ {print $2; exit}' \
    /etc/apt/sources.list 2>/dev/null || true)
  echo "${mirror:-http://deb.debian.org/debian}"
}
