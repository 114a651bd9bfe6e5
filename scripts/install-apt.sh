#!/usr/bin/env bash
# Installs Debian packages the tests need when their program is missing:
#   scripts/install-apt.sh PROGRAM PACKAGE
# e.g. scripts/install-apt.sh /usr/bin/chromium chromium. Runs apt-get update first (a
# fresh machine has no package lists), waits for another apt run to finish rather than
# failing, and needs root (as on the project's machines and CI). Prints the program's path.
set -euo pipefail
prog="$1"
pkg="$2"
if [ -x "$prog" ]; then
  echo "$prog"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-apt: $prog is missing and installing Debian package $pkg needs root: run 'apt-get install $pkg' as root" >&2
  exit 1
fi
echo "install-apt: installing Debian package $pkg (for $prog)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$pkg" >&2
if [ ! -x "$prog" ]; then
  echo "install-apt: package $pkg installed but $prog is still missing" >&2
  exit 1
fi
echo "$prog"
