#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft: broker + controller in one JVM) for
# development and the integration tests. No Docker, no tarball: the broker's jars are
# resolved by Maven from deploy/kafka/pom.xml into $VAR/kafka/lib, and the broker runs
# as `java -cp "$VAR/kafka/lib/*" kafka.Kafka server.properties`, bound to 127.0.0.1 only.
#
#   kafka.sh up            resolve jars (once), format storage (once), start, wait until ready
#   kafka.sh down [--purge] stop the broker by its recorded PID; --purge also deletes the data
#   kafka.sh status        running or not, and the bootstrap address (exit 0 running, 3 not)
#   kafka.sh logs [-f] [N] last N lines (default 100) of the broker's server.log; -f follows
#   kafka.sh bootstrap     print the bootstrap address (127.0.0.1:$VISEARCH_KAFKA_PORT) and exit
#   kafka.sh tool CLASS [ARGS...]
#                          run a Kafka command-line tool from the lib folder, e.g.
#                          kafka.sh tool org.apache.kafka.tools.TopicCommand --list \
#                              --bootstrap-server 127.0.0.1:9092
#   kafka.sh scram-user NAME
#                          create or update NAME's SCRAM-SHA-512 credentials,
#                          the password read from stdin (through the PLAINTEXT listener)
#
# Environment (all optional):
#   VISEARCH_VAR_DIR                 state root (default <repo>/var); the broker lives in $VAR/kafka
#   VISEARCH_KAFKA_PORT              client listener port (default 9092)
#   VISEARCH_KAFKA_CONTROLLER_PORT   KRaft controller listener port (default 9093)
#   VISEARCH_KAFKA_START_TIMEOUT     seconds `up` waits for readiness (default 90)
#   VISEARCH_KAFKA_HEAP_OPTS         JVM heap flags (default "-Xmx512m -Xms256m")
#   VISEARCH_KAFKA_JVM_OPTS          extra JVM flags for the broker
#   VISEARCH_KAFKA_BROKER_MESSAGE_MAX_BYTES
#                                    broker message.max.bytes (default 26214400); not the app's
#                                    VISEARCH_KAFKA_MAX_MESSAGE_BYTES (topic/producer limit)
#   VISEARCH_KAFKA_CLUSTER_ID        cluster id used when formatting (default: a random one)
#   VISEARCH_KAFKA_MVN               Maven command (default mvn); VISEARCH_KAFKA_MVN_ARGS extra args
#
# Optional secured client listener (TLS + SASL) next to the PLAINTEXT one, which stays the
# inter-broker listener and the one `up` probes and creates SCRAM users through:
#   VISEARCH_KAFKA_SASL_SSL_PORT     port of a SASL_SSL listener on 127.0.0.1 (unset: none), with
#                                    the SASL mechanisms SCRAM-SHA-512 and PLAIN
#   VISEARCH_KAFKA_TLS_DIR           folder of the PEM files it needs: broker.pem (the broker's
#                                    certificate chain, 127.0.0.1 in its subjectAltName), broker.key
#                                    (its unencrypted PKCS#8 key) and ca.pem (CAs trusted for client
#                                    certificates); Kafka reads them as ssl.keystore/truststore.type=PEM
#   VISEARCH_KAFKA_SSL_CLIENT_AUTH   none (default) | requested | required: client certificates
#   VISEARCH_KAFKA_PLAIN_USERS       SASL/PLAIN users, "name:password,..." (written into the
#                                    listener's JAAS config in server.properties, mode 600; a
#                                    running broker reads them at its next start)
#   VISEARCH_KAFKA_SCRAM_USERS       SCRAM users, "name:password,...": their SCRAM-SHA-512
#                                    credentials are set after each start (kafka.admin.ConfigCommand
#                                    through the PLAINTEXT listener; kept in the cluster metadata)
# Names are [A-Za-z0-9._-]+; a password may not hold a comma, quote, backslash or bracket.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

VAR_DIR="${VISEARCH_VAR_DIR:-$REPO_ROOT/var}"
case "$VAR_DIR" in /*) ;; *) VAR_DIR="$REPO_ROOT/$VAR_DIR" ;; esac
KAFKA_HOME="$VAR_DIR/kafka"
LIB_DIR="$KAFKA_HOME/lib"
DATA_DIR="$KAFKA_HOME/data"
LOG_DIR="$KAFKA_HOME/logs"
CONF_DIR="$KAFKA_HOME/config"
PID_FILE="$KAFKA_HOME/kafka.pid"
LOCK_FILE="$KAFKA_HOME/.lock"
SERVER_PROPS="$CONF_DIR/server.properties"
LOG4J_CONF="$CONF_DIR/log4j2.properties"
TOOLS_LOG4J_CONF="$CONF_DIR/tools-log4j2.properties"
CLIENT_PROPS="$CONF_DIR/probe-client.properties"
RESOLVED_STAMP="$LIB_DIR/.resolved"

HOST=127.0.0.1
PORT="${VISEARCH_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${VISEARCH_KAFKA_CONTROLLER_PORT:-9093}"
BOOTSTRAP="$HOST:$PORT"
START_TIMEOUT="${VISEARCH_KAFKA_START_TIMEOUT:-90}"
HEAP_OPTS="${VISEARCH_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
MESSAGE_MAX_BYTES="${VISEARCH_KAFKA_BROKER_MESSAGE_MAX_BYTES:-26214400}"
MVN="${VISEARCH_KAFKA_MVN:-mvn}"
NODE_ID=1
SASL_SSL_PORT="${VISEARCH_KAFKA_SASL_SSL_PORT:-}"
TLS_DIR="${VISEARCH_KAFKA_TLS_DIR:-}"
SSL_CLIENT_AUTH="${VISEARCH_KAFKA_SSL_CLIENT_AUTH:-none}"
PLAIN_USERS="${VISEARCH_KAFKA_PLAIN_USERS:-}"
SCRAM_USERS="${VISEARCH_KAFKA_SCRAM_USERS:-}"
KEYSTORE_PEM="$CONF_DIR/broker-keystore.pem"

say() { echo "kafka: $*"; }
die() { echo "kafka: $*" >&2; exit 1; }

need_java() {
  command -v java >/dev/null || die "java not found (Java 17+ is required)"
}

# --- PID handling: only ever the PID this script recorded, and only if it is our broker ---

recorded_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [ -n "$pid" ] || return 1
  echo "$pid"
}

# True when PID is alive and is the kafka.Kafka JVM started with our server.properties
# (guards against a recycled PID belonging to some other process).
is_our_broker() {
  local pid="$1" cmdline
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"kafka.Kafka $SERVER_PROPS"* ]]
}

# Alive and not a zombie (a child that died is a zombie until the shell reaps it).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

running_pid() {
  local pid
  pid="$(recorded_pid)" || return 1
  is_our_broker "$pid" || return 1
  echo "$pid"
}

port_open() {  # bash's /dev/tcp: a plain TCP connect, no extra tools
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# --- jars ---

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

lib_complete() {
  [ -f "$RESOLVED_STAMP" ] && [ "$(cat "$RESOLVED_STAMP")" = "$(pom_hash)" ] \
    && compgen -G "$LIB_DIR/kafka_2.13-*.jar" >/dev/null
}

resolve_jars() {
  if lib_complete; then
    return 0
  fi
  command -v "$MVN" >/dev/null || die "Maven ($MVN) not found: needed once to resolve the Kafka jars"
  say "resolving Kafka jars with Maven into $LIB_DIR (once) ..."
  local tmp="$KAFKA_HOME/lib.tmp.$$"
  rm -rf "$tmp"
  # shellcheck disable=SC2086
  if ! "$MVN" -B -q -f "$POM" ${VISEARCH_KAFKA_MVN_ARGS:-} dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/mvn.log" 2>&1; then
    tail -n 40 "$KAFKA_HOME/mvn.log" >&2
    rm -rf "$tmp"
    die "Maven could not resolve the Kafka jars (full output: $KAFKA_HOME/mvn.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "no kafka_2.13 jar after resolution"; }
  pom_hash >"$tmp/.resolved"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  say "resolved $(ls "$LIB_DIR"/*.jar | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1))"
}

kafka_version() {
  local jar
  jar="$(compgen -G "$LIB_DIR/kafka_2.13-*.jar" | head -n1)" || return 0
  jar="${jar##*/kafka_2.13-}"
  echo "${jar%.jar}"
}

# --- the optional SASL_SSL listener ---

# "name:password,..." (in $2, named $1 in errors) -> one "name<TAB>password" line per user.
split_users() {
  local var="$1" list="$2" entry name password
  local -a entries
  [ -n "$list" ] || return 0
  IFS=',' read -r -a entries <<<"$list"
  for entry in "${entries[@]}"; do
    [ -n "$entry" ] || continue
    name="${entry%%:*}"
    password="${entry#*:}"
    [[ "$entry" == *:* && "$name" =~ ^[A-Za-z0-9._-]+$ && -n "$password" ]] \
      || die "$var: each entry is name:password, the name of [A-Za-z0-9._-]"
    case "$password" in
      *'"'* | *"'"* | *'\'* | *'['* | *']'*)
        die "$var: the password of $name holds a quote, backslash or bracket" ;;
    esac
    printf '%s\t%s\n' "$name" "$password"
  done
}

# Dies unless the secured listener's settings are complete (nothing to check without its port).
check_secured_listener() {
  [ -n "$SASL_SSL_PORT" ] || return 0
  [[ "$SASL_SSL_PORT" =~ ^[0-9]+$ ]] || die "VISEARCH_KAFKA_SASL_SSL_PORT is not a port: $SASL_SSL_PORT"
  [ "$SASL_SSL_PORT" != "$PORT" ] && [ "$SASL_SSL_PORT" != "$CONTROLLER_PORT" ] \
    || die "VISEARCH_KAFKA_SASL_SSL_PORT must differ from the PLAINTEXT and controller ports"
  [ -n "$TLS_DIR" ] || die "VISEARCH_KAFKA_SASL_SSL_PORT needs VISEARCH_KAFKA_TLS_DIR (broker.pem, broker.key, ca.pem)"
  [ -d "$TLS_DIR" ] || die "VISEARCH_KAFKA_TLS_DIR: $TLS_DIR is not a folder"
  TLS_DIR="$(cd "$TLS_DIR" && pwd)"
  local f
  for f in broker.pem broker.key ca.pem; do
    [ -r "$TLS_DIR/$f" ] || die "VISEARCH_KAFKA_TLS_DIR: $TLS_DIR/$f is missing or unreadable"
  done
  case "$SSL_CLIENT_AUTH" in
    none | requested | required) ;;
    *) die "VISEARCH_KAFKA_SSL_CLIENT_AUTH must be none, requested or required (not $SSL_CLIENT_AUTH)" ;;
  esac
  split_users VISEARCH_KAFKA_PLAIN_USERS "$PLAIN_USERS" >/dev/null
  split_users VISEARCH_KAFKA_SCRAM_USERS "$SCRAM_USERS" >/dev/null
}

# The listener's lines of server.properties (nothing without VISEARCH_KAFKA_SASL_SSL_PORT).
secured_listener_config() {
  [ -n "$SASL_SSL_PORT" ] || return 0
  local plain_jaas="org.apache.kafka.common.security.plain.PlainLoginModule required" name password
  while IFS=$'\t' read -r name password; do
    plain_jaas+=" user_$name=\"$password\""
  done < <(split_users VISEARCH_KAFKA_PLAIN_USERS "$PLAIN_USERS")
  cat <<EOF

# Secured client listener (VISEARCH_KAFKA_SASL_SSL_PORT): TLS from PEM files, SASL SCRAM-SHA-512
# (credentials in the cluster metadata, set by 'up' or 'scram-user') and PLAIN (the users here).
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$KEYSTORE_PEM
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$TLS_DIR/ca.pem
listener.name.sasl_ssl.ssl.client.auth=$SSL_CLIENT_AUTH
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=$plain_jaas;
EOF
}

# The broker's key and certificate chain in one PEM file (Kafka's PEM key store), mode 600.
write_keystore() {
  if [ -z "$SASL_SSL_PORT" ]; then
    rm -f "$KEYSTORE_PEM"
    return 0
  fi
  (umask 077 && cat "$TLS_DIR/broker.key" "$TLS_DIR/broker.pem" >"$KEYSTORE_PEM")
}

# Set SCRAM-SHA-512 credentials through the PLAINTEXT listener; stdin: "name<TAB>password" lines.
# The password goes through a file (mode 600, removed at once), never the tool's command line.
set_scram_credentials() {
  local name password file
  while IFS=$'\t' read -r name password; do
    [ -n "$name" ] || continue
    file="$CONF_DIR/.scram-$name.properties"
    (umask 077 && printf 'SCRAM-SHA-512=password=%s\n' "$password" >"$file")
    if ! run_tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --command-config "$CLIENT_PROPS" \
        --alter --entity-type users --entity-name "$name" --add-config-file "$file" \
        >"$LOG_DIR/scram.log" 2>&1; then
      rm -f "$file"
      cat "$LOG_DIR/scram.log" >&2
      die "setting the SCRAM credentials of $name failed"
    fi
    rm -f "$file"
    say "SCRAM-SHA-512 credentials of $name set"
  done
}

# --- configuration (rewritten on every `up`, so port/env changes apply) ---

write_config() {
  check_secured_listener
  mkdir -p "$CONF_DIR" "$DATA_DIR" "$LOG_DIR"
  local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://$HOST:$PORT" protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ -n "$SASL_SSL_PORT" ]; then
    listeners+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
    advertised+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  write_keystore
  # It may hold PLAIN passwords: readable by the owner only.
  (umask 077 && : >"$SERVER_PROPS")
  chmod 600 "$SERVER_PROPS"
  cat >"$SERVER_PROPS" <<EOF
# Written by deploy/kafka/kafka.sh on every 'up'; edit the script, not this file.
# Single-node KRaft: this JVM is both the broker and the (only) controller.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$NODE_ID@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER

# Loopback only.
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols

log.dirs=$DATA_DIR

# Topics are created explicitly (by the services / tests), never by a typo'd producer.
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1

# Single node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Consumers in tests join at once instead of waiting for more members.
group.initial.rebalance.delay.ms=0

# Image events may carry the image inline (up to VISEARCH_IMAGE_MAX_BYTES, 20 MiB by default).
# Producers must raise max.request.size to send records this large.
message.max.bytes=$MESSAGE_MAX_BYTES
replica.fetch.max.bytes=$MESSAGE_MAX_BYTES

num.network.threads=2
num.io.threads=4
log.retention.hours=168
log.segment.bytes=268435456
$(secured_listener_config)
EOF

  cat >"$LOG4J_CONF" <<EOF
# Broker logging (log4j2), written by deploy/kafka/kafka.sh.
status = warn
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = $LOG_DIR/server.log
appender.server.filePattern = $LOG_DIR/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 20MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3

appender.stdout.type = Console
appender.stdout.name = stdout
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
appender.stdout.filter.threshold.type = ThresholdFilter
appender.stdout.filter.threshold.level = warn

rootLogger.level = info
rootLogger.appenderRef.server.ref = server
rootLogger.appenderRef.stdout.ref = stdout

# Quieter than Kafka's defaults: per-request and state-change chatter stays out.
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = info
logger.raft.name = org.apache.kafka.raft
logger.raft.level = info
EOF

  cat >"$TOOLS_LOG4J_CONF" <<EOF
# Command-line tools (readiness probe, 'kafka.sh tool'): warnings only, on stderr.
status = warn
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
EOF

  cat >"$CLIENT_PROPS" <<EOF
# Admin client settings for the readiness probe: fail fast instead of retrying for a minute.
request.timeout.ms=5000
default.api.timeout.ms=8000
socket.connection.setup.timeout.ms=2000
socket.connection.setup.timeout.max.ms=3000
EOF
}

# Run a Kafka tool class from the lib folder (short-lived JVM, small heap).
run_tool() {
  local cls="$1"; shift
  java -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONF" \
    -cp "$LIB_DIR/*" "$cls" "$@"
}

format_storage() {
  if [ -f "$DATA_DIR/meta.properties" ]; then
    return 0
  fi
  local cluster_id="${VISEARCH_KAFKA_CLUSTER_ID:-}"
  if [ -z "$cluster_id" ]; then
    cluster_id="$(run_tool kafka.tools.StorageTool random-uuid | tail -n1)"
  fi
  say "formatting $DATA_DIR (cluster id $cluster_id)"
  if ! run_tool kafka.tools.StorageTool format --config "$SERVER_PROPS" --cluster-id "$cluster_id" \
      >"$LOG_DIR/format.log" 2>&1; then
    cat "$LOG_DIR/format.log" >&2
    die "formatting the storage failed"
  fi
}

# A real metadata round trip: list topics with the admin client.
probe() {
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$CLIENT_PROPS" --list >/dev/null 2>&1
}

# Size of server.log before this start, so a failure shows only this start's lines.
LOG_START_OFFSET=0

show_log_tail() {
  if [ -s "$LOG_DIR/kafka.out" ]; then
    echo "----- last lines of $LOG_DIR/kafka.out -----" >&2
    tail -n 30 "$LOG_DIR/kafka.out" >&2
  fi
  local f="$LOG_DIR/server.log" size
  if [ -s "$f" ]; then
    size="$(stat -c %s "$f")"
    [ "$size" -ge "$LOG_START_OFFSET" ] || LOG_START_OFFSET=0  # rolled over meanwhile
    if [ "$size" -gt "$LOG_START_OFFSET" ]; then
      echo "----- last lines of $f -----" >&2
      tail -c +"$((LOG_START_OFFSET + 1))" "$f" | tail -n 30 >&2
    fi
  fi
}

# Wait until the broker answers a metadata request. Liveness is alive(), not is_our_broker:
# right after the fork, /proc/PID/cmdline is still the forked shell / setsid, not yet java.
wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    if ! alive "$pid"; then
      show_log_tail; rm -f "$PID_FILE"; die "the broker (pid $pid) exited during start-up"
    fi
    if port_open "$PORT" && probe; then
      return 0
    fi
    sleep 0.5
  done
  show_log_tail
  say "the broker (pid $pid) was not ready after ${START_TIMEOUT}s: stopping it" >&2
  stop_pid "$pid" >&2
  rm -f "$PID_FILE"
  die "start-up failed (raise VISEARCH_KAFKA_START_TIMEOUT if the machine is just slow)"
}

# "bootstrap A" plus ", SASL_SSL B" when the secured listener is on.
listeners_said() {
  echo "bootstrap $BOOTSTRAP${SASL_SSL_PORT:+, SASL_SSL $HOST:$SASL_SSL_PORT}"
}

# After a start: the secured listener accepts connections, and SCRAM users exist.
finish_secured_listener() {
  [ -n "$SASL_SSL_PORT" ] || return 0
  local deadline=$((SECONDS + 30))
  until port_open "$SASL_SSL_PORT"; do
    [ $SECONDS -lt $deadline ] || die "the SASL_SSL listener on $HOST:$SASL_SSL_PORT is not accepting connections"
    sleep 0.2
  done
  split_users VISEARCH_KAFKA_SCRAM_USERS "$SCRAM_USERS" | set_scram_credentials
}

cmd_up() {
  need_java
  check_secured_listener
  mkdir -p "$KAFKA_HOME"
  exec 9>"$LOCK_FILE"
  flock -w 600 9 || die "another kafka.sh holds $LOCK_FILE"

  local pid
  if pid="$(running_pid)"; then
    write_config  # the probe's client settings
    if port_open "$PORT" && probe; then
      finish_secured_listener
      say "already running (pid $pid), $(listeners_said)"
      return 0
    fi
    say "pid $pid is starting; waiting for it"
    wait_ready "$pid"
    finish_secured_listener
    say "ready (pid $pid), $(listeners_said)"
    return 0
  fi
  rm -f "$PID_FILE"

  if port_open "$PORT"; then
    die "port $PORT on $HOST is taken by another process (set VISEARCH_KAFKA_PORT)"
  fi
  if port_open "$CONTROLLER_PORT"; then
    die "port $CONTROLLER_PORT on $HOST is taken by another process (set VISEARCH_KAFKA_CONTROLLER_PORT)"
  fi
  if [ -n "$SASL_SSL_PORT" ] && port_open "$SASL_SSL_PORT"; then
    die "port $SASL_SSL_PORT on $HOST is taken by another process (set VISEARCH_KAFKA_SASL_SSL_PORT)"
  fi

  resolve_jars
  write_config
  format_storage

  say "starting Kafka $(kafka_version) on $BOOTSTRAP (logs in $LOG_DIR)"
  LOG_START_OFFSET="$(stat -c %s "$LOG_DIR/server.log" 2>/dev/null || echo 0)"
  # setsid: its own session, so a Ctrl-C in the shell that ran `up` does not reach it.
  # shellcheck disable=SC2086
  setsid java $HEAP_OPTS \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$LOG4J_CONF" \
    ${VISEARCH_KAFKA_JVM_OPTS:-} \
    -cp "$LIB_DIR/*" kafka.Kafka "$SERVER_PROPS" \
    >"$LOG_DIR/kafka.out" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  wait_ready "$pid"
  finish_secured_listener
  say "ready (pid $pid), $(listeners_said)"
}

# SIGTERM (Kafka shuts down cleanly, usually in about a second), up to 30 s, then SIGKILL.
# Only ever the one PID given, which the caller has checked is ours.
stop_pid() {
  local pid="$1" i
  say "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    alive "$pid" || break
    sleep 0.5
  done
  if alive "$pid"; then
    say "pid $pid still alive after 30s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
      alive "$pid" || break
      sleep 0.25
    done
  fi
  say "stopped"
}

cmd_down() {
  local purge=0
  for a in "$@"; do
    case "$a" in
      --purge) purge=1 ;;
      *) die "down: unknown option $a" ;;
    esac
  done
  mkdir -p "$KAFKA_HOME"
  exec 9>"$LOCK_FILE"
  flock -w 120 9 || die "another kafka.sh holds $LOCK_FILE"

  local pid
  if pid="$(running_pid)"; then
    stop_pid "$pid"
  else
    say "not running"
  fi
  rm -f "$PID_FILE"
  if [ $purge -eq 1 ]; then
    rm -rf "$DATA_DIR"
    say "purged $DATA_DIR"
  fi
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    if port_open "$PORT"; then
      echo "kafka: running (pid $pid, Kafka $(kafka_version)), $(listeners_said)"
    else
      echo "kafka: running (pid $pid, Kafka $(kafka_version)) but $BOOTSTRAP is not accepting connections yet"
    fi
    return 0
  fi
  echo "kafka: not running (bootstrap would be $BOOTSTRAP)"
  return 3
}

cmd_logs() {
  local follow=0 n=100
  for a in "$@"; do
    case "$a" in
      -f|--follow) follow=1 ;;
      ''|*[!0-9]*) die "logs: usage: kafka.sh logs [-f] [N]" ;;
      *) n="$a" ;;
    esac
  done
  local f="$LOG_DIR/server.log"
  [ -f "$f" ] || die "no log yet at $f"
  if [ $follow -eq 1 ]; then
    exec tail -n "$n" -F "$f"
  fi
  tail -n "$n" "$f"
}

cmd_tool() {
  [ $# -ge 1 ] || die "tool: usage: kafka.sh tool CLASS [ARGS...]"
  need_java
  lib_complete || die "the Kafka jars are not resolved yet: run 'kafka.sh up' first"
  [ -f "$TOOLS_LOG4J_CONF" ] || write_config
  run_tool "$@"
}

cmd_scram_user() {
  [ $# -eq 1 ] || die "scram-user: usage: kafka.sh scram-user NAME (the password on stdin)"
  need_java
  lib_complete || die "the Kafka jars are not resolved yet: run 'kafka.sh up' first"
  [ -f "$TOOLS_LOG4J_CONF" ] && [ -f "$CLIENT_PROPS" ] || write_config
  local password
  IFS= read -r password || [ -n "$password" ] || die "scram-user: no password on stdin"
  [ -n "$password" ] || die "scram-user: the password on stdin is empty"
  split_users "scram-user" "$1:$password" | set_scram_credentials
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  logs) shift; cmd_logs "$@" ;;
  tool) shift; cmd_tool "$@" ;;
  scram-user) shift; cmd_scram_user "$@" ;;
  bootstrap) echo "$BOOTSTRAP" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
