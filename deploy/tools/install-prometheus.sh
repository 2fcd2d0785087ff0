#!/usr/bin/env bash
# Prometheus server and promtool from Debian's `prometheus` package, unpacked (not installed, so no
# service starts) into ${VISEARCH_VAR_DIR:-var}/tools/bin. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${VISEARCH_VAR_DIR:-$ROOT/var}/tools/bin"
mkdir -p "$BIN"
if [ -x "$BIN/prometheus" ] && [ -x "$BIN/promtool" ]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; })
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
cp "$tmp/x/usr/bin/prometheus" "$tmp/x/usr/bin/promtool" "$BIN/"
echo "prometheus: $("$BIN/prometheus" --version 2>&1 | head -1)"
