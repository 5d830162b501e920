#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, start OVS +
# server + agent (SQLite, in-process bus), boot 8 VMs at once on network
# "private", prove the wiring with traffic, tear down, print a summary.
# Extra arguments go to `vifwire boot` (e.g. --count 100 --json).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "error: run as root (Open vSwitch daemons, network namespaces)" >&2; exit 1; fi
scripts/install.sh
exec .venv/bin/vifwire boot --count 8 --network private "$@"
