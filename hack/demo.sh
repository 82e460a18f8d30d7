#!/usr/bin/env bash
# make demo: kproxy in a sandbox of network namespaces, with real traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root (it creates network namespaces and iptables rules inside them)" >&2
  exit 1
fi
exec go run ./examples/demo "$@"
