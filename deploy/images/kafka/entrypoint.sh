#!/bin/bash
# Entrypoint of localhost/visearch/kafka: a single-node KRaft broker (broker + controller in one JVM).
# Writes /opt/kafka/config/server.properties from the environment on every start, formats the storage
# under $KAFKA_DATA_DIR once (meta.properties marks it formatted: a restarted pod keeps its data), then execs
# the broker as PID 1 so SIGTERM gives a clean shutdown.
#
# Environment (defaults in brackets):
#   KAFKA_ADVERTISED_HOST      in-cluster name advertised on INTERNAL [hostname -f]
#   KAFKA_INTERNAL_PORT        INTERNAL listener, PLAINTEXT [9092]
#   KAFKA_EXTERNAL_PORT        EXTERNAL listener in the container, PLAINTEXT [9094]
#   KAFKA_EXTERNAL_ADVERTISED  what EXTERNAL advertises [127.0.0.1:19092]
#   KAFKA_CONTROLLER_PORT      KRaft CONTROLLER listener, loopback [9093]
#   KAFKA_DATA_DIR [/var/lib/kafka]   KAFKA_CLUSTER_ID [random, at the first format]
#   KAFKA_MESSAGE_MAX_BYTES [26214400]  KAFKA_AUTO_CREATE_TOPICS [false]  KAFKA_NUM_PARTITIONS [3]
#   KAFKA_HEAP_OPTS ["-Xmx512m -Xms256m"]  KAFKA_JVM_OPTS (extra JVM flags)
#   KAFKA_EXTRA_PROPERTIES     lines appended to server.properties as they are
set -euo pipefail
CONF=/opt/kafka/config
DATA="${KAFKA_DATA_DIR:-/var/lib/kafka}"
ADV_HOST="${KAFKA_ADVERTISED_HOST:-$(hostname -f)}"
INTERNAL="${KAFKA_INTERNAL_PORT:-9092}" EXTERNAL="${KAFKA_EXTERNAL_PORT:-9094}"
CONTROLLER="${KAFKA_CONTROLLER_PORT:-9093}"
MAX="${KAFKA_MESSAGE_MAX_BYTES:-26214400}"
java_tool() { java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$CONF/log4j2.properties" -cp '/opt/kafka/lib/*' "$@"; }

mkdir -p "$CONF" "$DATA/data"
cat > "$CONF/server.properties" <<PROPS
# Written by the image's entrypoint on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER
controller.listener.names=CONTROLLER
listeners=INTERNAL://0.0.0.0:$INTERNAL,EXTERNAL://0.0.0.0:$EXTERNAL,CONTROLLER://127.0.0.1:$CONTROLLER
advertised.listeners=INTERNAL://$ADV_HOST:$INTERNAL,EXTERNAL://${KAFKA_EXTERNAL_ADVERTISED:-127.0.0.1:19092}
listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
log.dirs=$DATA/data
auto.create.topics.enable=${KAFKA_AUTO_CREATE_TOPICS:-false}
num.partitions=${KAFKA_NUM_PARTITIONS:-3}
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=$MAX
replica.fetch.max.bytes=$MAX
num.network.threads=2
num.io.threads=4
log.retention.hours=168
log.segment.bytes=268435456
${KAFKA_EXTRA_PROPERTIES:-}
PROPS

if [ ! -f "$DATA/data/meta.properties" ]; then
  id="${KAFKA_CLUSTER_ID:-$(java_tool kafka.tools.StorageTool random-uuid | tail -n1)}"
  echo "entrypoint: formatting $DATA/data (cluster id $id)"
  java_tool kafka.tools.StorageTool format --config "$CONF/server.properties" --cluster-id "$id"
fi

# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$CONF/log4j2.properties" ${KAFKA_JVM_OPTS:-} \
  -cp '/opt/kafka/lib/*' kafka.Kafka "$CONF/server.properties"
