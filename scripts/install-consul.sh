#!/usr/bin/env bash
# Builds a real Consul agent from the Go module proxy (Debian has no package and no other
# download is reachable) and caches the binary outside the clone so later runs reuse it.
# Prints the path of the binary on stdout.
#
# `go install github.com/hashicorp/consul@v1.22.0` does not work: Consul's go.mod replaces
# five submodules with local folders. So: download the module, copy it somewhere writable,
# download each submodule at the version its go.mod requires into the folder the replace
# names, and build there.
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-v1.22.0}"
cache="${FLOODGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/floodgate/tools}"
dest="$cache/consul-$CONSUL_VERSION"
bin="$dest/consul"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
if command -v consul >/dev/null 2>&1; then
  command -v consul
  exit 0
fi

mkdir -p "$dest"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

echo "building consul $CONSUL_VERSION from the Go module proxy (about 4 minutes)..." >&2
started=$SECONDS
step() { echo "  [$((SECONDS - started))s] $*" >&2; }
step "1/3 downloading github.com/hashicorp/consul@$CONSUL_VERSION"
dir=$(go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "install-consul: could not download github.com/hashicorp/consul@$CONSUL_VERSION" >&2; exit 1; }
cp -r "$dir" "$work/consul"
chmod -R u+w "$work/consul"

# submodule versions pinned for v1.22.0 (the ones its go.mod requires)
step "2/3 downloading its 5 submodules"
for m in api@v1.33.0 envoyextensions@v0.9.0 proto-public@v0.7.0 sdk@v0.17.0 troubleshoot@v0.8.0; do
  name=${m%@*}
  sdir=$(GONOSUMDB=github.com/hashicorp/consul GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/consul/$m" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$sdir" ] || { echo "install-consul: could not download github.com/hashicorp/consul/$m" >&2; exit 1; }
  rm -rf "$work/consul/$name"
  cp -r "$sdir" "$work/consul/$name"
  chmod -R u+w "$work/consul/$name"
done

step "3/3 compiling (the long part; a dot every 15 s)"
( while sleep 15; do printf . >&2; done ) >/dev/null &
ticker=$!
trap 'kill $ticker 2>/dev/null; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
(cd "$work/consul" && GOFLAGS=-mod=mod GONOSUMDB=github.com/hashicorp/consul CGO_ENABLED=0 go build -o "$bin.tmp" .)
kill $ticker 2>/dev/null || true
echo >&2
step "done: $bin"
mv "$bin.tmp" "$bin"
echo "$bin"
