#!/usr/bin/env bash
# A single-node Apache Kafka broker in KRaft mode (broker and controller in one process) on
# 127.0.0.1, from Apache Kafka's own jars resolved from Maven Central with Ivy (the Ivy jar pyspark
# ships; the jars land in Spark's Ivy cache, ~/.ivy2.5.2, once). No ZooKeeper: Kafka 4 has none.
#
#   infra/kafka.sh start     # resolve the jars (first time), format the log folder (first time), start, wait for the port
#   infra/kafka.sh stop      # stop the broker (its whole process group)
#   infra/kafka.sh status
#   infra/kafka.sh jars      # resolve the jars only
#
# Then: LAKECDP__STREAM__SOURCE=kafka .venv/bin/lakecdp stream run   (topic and servers: kafka: in conf/base/pipeline.yaml)
#
# Environment: LAKECDP_KAFKA_PORT (clients, default 9092), LAKECDP_KAFKA_CONTROLLER_PORT (9093),
# LAKECDP_KAFKA_PARTITIONS (of topics created on first use, default 2), LAKECDP_KAFKA_HEAP (512m),
# LAKECDP_KAFKA_DIR (jars, log folder, broker log and pid; default ./kafka-broker).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
# Kafka 4.1.1: KRaft only, runs on Java 17; the newest 4.1 release Maven Central served here (2026-12-05).
KAFKA_VERSION=4.1.1
SCALA=2.13
# Kafka logs through SLF4J 1.7; this binding sends it to log4j2 (whose default prints errors to the broker log).
LOG_BINDING=(org.apache.logging.log4j log4j-slf4j-impl 2.24.3)
PORT="${LAKECDP_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${LAKECDP_KAFKA_CONTROLLER_PORT:-9093}"
PARTITIONS="${LAKECDP_KAFKA_PARTITIONS:-2}"
HEAP="${LAKECDP_KAFKA_HEAP:-512m}"
STATE="${LAKECDP_KAFKA_DIR:-$REPO/kafka-broker}"
LIBS="$STATE/libs-$KAFKA_VERSION"

spark_home() { "$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'; }

retrieve() {   # retrieve ORG MODULE VERSION: the module and its runtime dependencies into $LIBS
  local ivy
  ivy="$(ls "$(spark_home)"/jars/ivy-*.jar | head -n 1)"
  java -jar "$ivy" -cache "${LAKECDP_IVY_CACHE:-$HOME/.ivy2.5.2/cache}" -dependency "$1" "$2" "$3" -confs default \
    -retrieve "$LIBS/[artifact]-[revision](-[classifier]).[ext]" >"$STATE/ivy.log" 2>&1 || {
      echo "could not resolve $1:$2:$3 from Maven Central (or Ivy's cache); Ivy's report: $STATE/ivy.log" >&2
      tail -n 20 "$STATE/ivy.log" >&2
      return 1
    }
}

jars() {
  mkdir -p "$STATE"
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  echo "resolving Apache Kafka $KAFKA_VERSION's jars from Maven Central into $LIBS"
  retrieve org.apache.kafka "kafka_$SCALA" "$KAFKA_VERSION"
  retrieve "${LOG_BINDING[@]}"
  touch "$LIBS/.complete"
}

running() {   # the pgid of the live broker, if any
  local file="$STATE/broker.pgid"
  [ -f "$file" ] && pgrep -g "$(cat "$file")" >/dev/null 2>&1 && cat "$file"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  if running >/dev/null; then echo "kafka already running: 127.0.0.1:$PORT"; return 0; fi
  jars
  cat >"$STATE/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$STATE/data
num.partitions=$PARTITIONS
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  local java=(java "-Xmx$HEAP" "-Xms$HEAP" -cp "$LIBS/*")
  if [ ! -f "$STATE/data/meta.properties" ]; then
    # A new log folder gets a cluster id, and this node is the quorum's only voter.
    "${java[@]}" kafka.tools.StorageTool format --standalone -t "$("${java[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$STATE/server.properties" >"$STATE/format.log" 2>&1 || { cat "$STATE/format.log" >&2; return 1; }
  fi
  setsid "${java[@]}" kafka.Kafka "$STATE/server.properties" >"$STATE/broker.log" 2>&1 </dev/null &
  echo $! >"$STATE/broker.pgid"
  for _ in $(seq 1 120); do
    if port_open; then echo "kafka up: 127.0.0.1:$PORT (KRaft, log folder $STATE/data)"; return 0; fi
    if ! running >/dev/null; then break; fi
    sleep 0.5
  done
  echo "kafka did not come up within 60 s; $STATE/broker.log:" >&2
  tail -n 30 "$STATE/broker.log" >&2 || true
  stop
  return 1
}

stop() {
  local pgid
  if pgid="$(running)"; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 60); do pgrep -g "$pgid" >/dev/null 2>&1 || break; sleep 0.25; done
    if pgrep -g "$pgid" >/dev/null 2>&1; then
      echo "kafka ignored TERM for 15 s: killing it" >&2
      kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    echo "kafka stopped"
  else
    echo "kafka not running"
  fi
  rm -f "$STATE/broker.pgid"
}

status() {
  if running >/dev/null && port_open; then echo "kafka running: 127.0.0.1:$PORT"; else echo "kafka not running"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  jars) jars ;;
  *) echo "usage: $0 start|stop|status|jars" >&2; exit 2 ;;
esac
