#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser tests when /usr/bin/chromium is
# missing. Prints its path.
exec "$(dirname "$0")/install-apt.sh" /usr/bin/chromium chromium
