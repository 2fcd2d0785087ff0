#!/usr/bin/env bash
# localhost/visearch/kafka:<kafka.version of deploy/kafka/pom.xml> (4.3.1): a single-node KRaft Kafka broker
# for the local cluster's deps chart (deploy/k8s/deps), built FROM the Debian base of deploy/images/lib.sh.
#
#   ROOT=<repo> bash deploy/images/kafka/build.sh [--help]     (or: deploy/images/build.sh kafka)
#
# Contents: Debian's openjdk-17-jre-headless; the broker and tool jars Maven resolves from deploy/kafka/pom.xml
# (the same resolution as deploy/kafka/kafka.sh: var/kafka/lib is copied when it matches the pom, else
# `mvn dependency:copy-dependencies` runs into var/images/kafka/lib); entrypoint.sh (server.properties from
# env, KRaft format once on /var/lib/kafka, exec kafka.Kafka), ready.sh (ApiVersions round trip) and
# log4j2.properties (stdout). User kafka, uid 10001. Why not an upstream image: no container registry here.
# Skipped when the image exists, unless FORCE=1.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}"
# shellcheck source=deploy/images/lib.sh
source "$ROOT/deploy/images/lib.sh"
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;; esac
HERE="$ROOT/deploy/images/kafka" POM="$ROOT/deploy/kafka/pom.xml" CTX="$WORK/kafka"
KV=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -1)
[ -n "$KV" ] || die "no kafka.version in $POM"
IMG="localhost/visearch/kafka:$KV"
if [ "${FORCE:-0}" != 1 ] && podman image exists "$IMG"; then t "$IMG present"; exit 0; fi
base
start=$SECONDS hash=$(sha256sum "$POM" | cut -d' ' -f1) lib="$ROOT/var/kafka/lib"
mkdir -p "$CTX"
if [ "$(cat "$CTX/lib/.resolved" 2>/dev/null)" != "$hash" ]; then
  rm -rf "$CTX/lib"
  if [ "$(cat "$lib/.resolved" 2>/dev/null)" = "$hash" ] && compgen -G "$lib/kafka_2.13-$KV.jar" >/dev/null; then
    t "jars: copying $lib (resolved from the same pom)"; cp -a "$lib" "$CTX/lib"
  else
    need mvn; t "jars: mvn dependency:copy-dependencies into $CTX/lib"
    # shellcheck disable=SC2086
    mvn -B -q -f "$POM" ${VISEARCH_KAFKA_MVN_ARGS:-} dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$CTX/lib.tmp" > "$CTX/mvn.log" 2>&1 || { tail -30 "$CTX/mvn.log" >&2; die "mvn failed ($CTX/mvn.log)"; }
    compgen -G "$CTX/lib.tmp/kafka_2.13-$KV.jar" >/dev/null || die "no kafka_2.13-$KV.jar after resolution"
    echo "$hash" > "$CTX/lib.tmp/.resolved"; mv "$CTX/lib.tmp" "$CTX/lib"
  fi
fi
cp "$HERE/entrypoint.sh" "$HERE/ready.sh" "$HERE/log4j2.properties" "$CTX/"
cat > "$CTX/Containerfile" <<CF
FROM $BASE
ENV LANG=C.UTF-8
RUN apt-get update \\
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && groupadd -g 10001 kafka && useradd -u 10001 -g 10001 -d /var/lib/kafka -s /usr/sbin/nologin kafka \\
 && mkdir -p /opt/kafka/config /opt/kafka/bin /var/lib/kafka && chown -R 10001:10001 /opt/kafka/config /var/lib/kafka
COPY lib/ /opt/kafka/lib/
COPY log4j2.properties /opt/kafka/config/
COPY --chmod=0755 entrypoint.sh ready.sh /opt/kafka/bin/
LABEL org.opencontainers.image.title="visearch local kafka" org.opencontainers.image.version="$KV"
USER 10001
WORKDIR /opt/kafka
VOLUME /var/lib/kafka
EXPOSE 9092 9094
ENTRYPOINT ["/opt/kafka/bin/entrypoint.sh"]
CF
# No host_build_mounts: nothing here uses pip or TLS (apt reads the base's plain-http mirror), and the read-only
# bind of /etc/ssl/certs/ca-certificates.crt breaks the ca-certificates postinst the JRE pulls in.
nice -n 10 podman build --network=host -t "$IMG" "$CTX"
t "$IMG built in $((SECONDS - start)) s ($(podman image inspect -f '{{.Size}}' "$IMG" | numfmt --to=iec))"
