#!/usr/bin/env bash
# Provides promtool (checks the Prometheus alert rules and the metrics text) from Debian's
# prometheus package. The package is downloaded and unpacked into a cache folder rather
# than installed: installing it would start a Prometheus server as a system service,
# which tests have no use for. Prints promtool's path.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
cache="${FLOODGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/floodgate/tools}/prometheus-deb"
bin="$cache/usr/bin/promtool"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
echo "install-promtool: fetching Debian package prometheus for promtool..." >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download prometheus >&2 2>/dev/null); then
  if [ "$(id -u)" = 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  fi
  (cd "$work" && apt-get download prometheus >&2)
fi
mkdir -p "$cache"
dpkg-deb -x "$work"/prometheus_*.deb "$cache"
[ -x "$bin" ] || { echo "install-promtool: no usr/bin/promtool in the prometheus package" >&2; exit 1; }
echo "$bin"
