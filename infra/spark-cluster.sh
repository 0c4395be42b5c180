#!/usr/bin/env bash
# A Spark standalone cluster on 127.0.0.1: one master and two workers, from the venv's pyspark
# (its own bin/spark-class and deploy classes; pip's pyspark ships no sbin/start-master.sh).
#
#   infra/spark-cluster.sh start     # start in the background, wait until both workers registered
#   infra/spark-cluster.sh stop      # stop the workers and the master (their whole process groups)
#   infra/spark-cluster.sh status
#
# Then: LAKECDP__SPARK__MASTER=spark://127.0.0.1:7077 .venv/bin/spark-submit jobs/stream_events.py --until-idle
#
# Environment: LAKECDP_SPARK_PORT (master, default 7077), LAKECDP_SPARK_UI_PORT (master UI and
# its JSON status, default 8091), LAKECDP_SPARK_WORKER_CORES (1) and LAKECDP_SPARK_WORKER_MEMORY
# (2g) per worker, LAKECDP_SPARK_CLUSTER_DIR (state, logs and worker scratch; default ./spark-cluster).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PORT="${LAKECDP_SPARK_PORT:-7077}"
UI_PORT="${LAKECDP_SPARK_UI_PORT:-8091}"
CORES="${LAKECDP_SPARK_WORKER_CORES:-1}"
MEMORY="${LAKECDP_SPARK_WORKER_MEMORY:-2g}"
STATE="${LAKECDP_SPARK_CLUSTER_DIR:-$REPO/spark-cluster}"
WORKERS=2

export SPARK_HOME="$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_LOCAL_IP=127.0.0.1
export SPARK_NO_DAEMONIZE=1
# Executors run Python UDFs (scoring) in this interpreter, which has lakecdp and its packages.
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$VENV/bin/python}"
MASTER_URL="spark://127.0.0.1:$PORT"

status_json() { curl -fsS "http://127.0.0.1:$UI_PORT/json/" 2>/dev/null; }

alive_workers() {
  status_json | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin).get("aliveworkers", 0))' 2>/dev/null || echo 0
}

running() {   # running NAME -> pgid of a live process group started for NAME
  local file="$STATE/$1.pgid"
  [ -f "$file" ] && pgrep -g "$(cat "$file")" >/dev/null 2>&1 && cat "$file"
}

launch() {   # launch NAME CLASS ARGS... in a process group of its own, logging to $STATE/NAME.log
  local name="$1"; shift
  setsid "$SPARK_HOME/bin/spark-class" "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pgid"
}

start() {
  mkdir -p "$STATE"
  if running master >/dev/null; then echo "spark cluster already running: $MASTER_URL"; return 0; fi
  launch master org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$PORT" --webui-port "$UI_PORT"
  for i in $(seq 1 "$WORKERS"); do
    mkdir -p "$STATE/worker-$i"
    # --webui-port 0: a free port each; the workers' UIs are not needed, the master's lists them.
    launch "worker-$i" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores "$CORES" --memory "$MEMORY" \
      --webui-port 0 --work-dir "$STATE/worker-$i" "$MASTER_URL"
  done
  for _ in $(seq 1 120); do
    if [ "$(alive_workers)" -ge "$WORKERS" ]; then
      echo "spark cluster up: $MASTER_URL with $WORKERS workers ($CORES core, $MEMORY each); UI http://127.0.0.1:$UI_PORT"
      return 0
    fi
    sleep 0.5
  done
  echo "spark cluster did not come up within 60 s; logs in $STATE/*.log:" >&2
  tail -n 20 "$STATE"/*.log >&2 || true
  stop
  return 1
}

stop() {
  local name pgid
  for name in $(seq -f "worker-%g" "$WORKERS" -1 1) master; do
    if pgid="$(running "$name")"; then
      kill -TERM -- "-$pgid" 2>/dev/null || true
      for _ in $(seq 1 40); do pgrep -g "$pgid" >/dev/null 2>&1 || break; sleep 0.25; done
      if pgrep -g "$pgid" >/dev/null 2>&1; then
        echo "$name ignored TERM for 10 s: killing it" >&2
        kill -KILL -- "-$pgid" 2>/dev/null || true
      fi
    fi
    rm -f "$STATE/$name.pgid"
  done
  echo "spark cluster stopped"
}

status() {
  if running master >/dev/null; then
    echo "spark cluster: $MASTER_URL, $(alive_workers) alive workers; UI http://127.0.0.1:$UI_PORT"
  else
    echo "spark cluster: not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
