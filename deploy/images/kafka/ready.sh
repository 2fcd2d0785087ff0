#!/bin/bash
# Readiness of localhost/visearch/kafka: one ApiVersions (v0) round trip on the INTERNAL listener. The broker
# answers requests only once it has started (a bound port alone accepts connections earlier). No JVM: bash.
set -euo pipefail
exec 3<>"/dev/tcp/127.0.0.1/${KAFKA_INTERNAL_PORT:-9092}"
# size 11 | api_key 18 | api_version 0 | correlation_id 7 | client_id "r"
printf '\x00\x00\x00\x0b\x00\x12\x00\x00\x00\x00\x00\x07\x00\x01r' >&3
resp=$(timeout 4 head -c 10 <&3 | od -An -tx1 | tr -d ' \n')
# size (4 bytes, any) | correlation_id 7 | error_code 0
[ "${resp:8:12}" = "000000070000" ] || { echo "unexpected ApiVersions answer: '$resp'" >&2; exit 1; }
