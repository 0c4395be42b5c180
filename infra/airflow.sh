#!/usr/bin/env bash
# Local Airflow for the lakecdp DAGs: API server + UI, scheduler (LocalExecutor), DAG processor and
# triggerer on 127.0.0.1, state in ./airflow_home (git-ignored, SQLite), DAGs from ./dags.
#
#   infra/airflow.sh start     # start in the background, wait until healthy, print the URL and login
#   infra/airflow.sh stop      # stop the whole process group (scheduler and workers included)
#   infra/airflow.sh status
#   infra/airflow.sh nightly [AS_OF]   # start if needed; retrain -> score -> export now, as of the lake's newest event
#
# Nothing listens beyond 127.0.0.1: the four components are started here rather than by
# `airflow standalone`, because standalone also starts Airflow 3.3.2's task-log servers (ports 8793
# and 8794), which bind every interface and have no host setting. `--skip-serve-logs` leaves them
# out; the UI reads task logs from the local files the workers write.
#
# Environment: LAKECDP_AIRFLOW_PORT (default 8080), AIRFLOW_HOME (default ./airflow_home),
# LAKECDP_CONF_DIR / LAKECDP__* as for every lakecdp command, LAKECDP_SPARK_SUBMIT to run the heavy
# tasks through `spark-submit jobs/<job>.py` instead of in-process.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PORT="${LAKECDP_AIRFLOW_PORT:-8080}"
export LAKECDP_AIRFLOW_PORT="$PORT"   # infra/airflow_nightly.py talks to the same port
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/airflow_home}"
PIDFILE="$AIRFLOW_HOME/standalone.pgid"
LOG="$AIRFLOW_HOME/standalone.log"

# `airflow standalone` starts its components as `airflow ...` subprocesses: the venv must be on PATH.
export PATH="$VENV/bin:$PATH"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$PORT/execution/"
export AIRFLOW__CORE__PARALLELISM=4          # 2-core machines: more only queues Spark jobs against each other
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
# What the tasks need, as `make` sets it for the CLI: Spark on loopback with the venv's Python.
export SPARK_LOCAL_IP=127.0.0.1
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$VENV/bin/python}"
export GX_ANALYTICS_ENABLED=false
export LAKECDP_CONF_DIR="${LAKECDP_CONF_DIR:-$REPO/conf}"

health_url="http://127.0.0.1:$PORT/api/v2/monitor/health"

# Healthy = the API answers and reports the scheduler, DAG processor and triggerer heartbeating.
healthy() {
  curl -fsS "$health_url" 2>/dev/null | "$VENV/bin/python" -c '
import json, sys
health = json.load(sys.stdin)
sys.exit(0 if all((health.get(c) or {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")) else 1)
' 2>/dev/null
}

running_pgid() {
  [ -f "$PIDFILE" ] || return 1
  local pgid
  pgid="$(cat "$PIDFILE")"
  # Still alive if any process is left in the group.
  if pgrep -g "$pgid" >/dev/null 2>&1; then echo "$pgid"; else return 1; fi
}

start() {
  if pgid="$(running_pgid)"; then
    echo "airflow already running (process group $pgid): http://127.0.0.1:$PORT"
    return 0
  fi
  command -v airflow >/dev/null || { echo "no airflow in $VENV/bin: run 'make setup' first" >&2; exit 1; }
  mkdir -p "$AIRFLOW_HOME"
  cd "$REPO"   # ./lake and ./landing (conf defaults) resolve in the repo, as for `lakecdp demo`
  echo "migrating the metadata database in $AIRFLOW_HOME"
  airflow db migrate >"$LOG" 2>&1 || { echo "airflow db migrate failed; last lines of $LOG:" >&2; tail -n 30 "$LOG" >&2; exit 1; }
  # setsid: a new session and process group, so stop can signal every component at once. The
  # supervisor shell exits (taking the group down on stop) when any component dies.
  setsid bash -c '
    airflow api-server --host 127.0.0.1 --port "$1" &
    airflow scheduler --skip-serve-logs &
    airflow dag-processor &
    airflow triggerer --skip-serve-logs &
    wait -n
    echo "an airflow component exited: stopping the others" >&2
    kill -TERM 0
  ' lakecdp-airflow "$PORT" >>"$LOG" 2>&1 < /dev/null &
  local pid=$!
  local pgid
  pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')"
  echo "$pgid" >"$PIDFILE"
  echo "starting airflow (process group $pgid), log: $LOG"
  for _ in $(seq 1 180); do
    if healthy; then
      echo "airflow is up: http://127.0.0.1:$PORT"
      local passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
      [ -f "$passwords" ] && echo "login: admin / password in $passwords"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "airflow exited; last lines of $LOG:" >&2
      tail -n 30 "$LOG" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    sleep 1
  done
  echo "airflow did not become healthy in 180 s; see $LOG (still running: infra/airflow.sh stop)" >&2
  exit 1
}

stop() {
  local pgid
  if ! pgid="$(running_pgid)"; then
    echo "airflow is not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM -- "-$pgid" 2>/dev/null || true
  # 60 s: on a loaded 2-core machine the scheduler and api-server's workers have taken over 30 s to drain.
  for _ in $(seq 1 60); do
    pgrep -g "$pgid" >/dev/null 2>&1 || { rm -f "$PIDFILE"; echo "airflow stopped"; return 0; }
    sleep 1
  done
  # Name what lingered (command lines only), so a slow component can be found in the log.
  echo "process group $pgid ignored TERM for 60 s: sending KILL to"
  pgrep -a -g "$pgid" | cut -c1-200 || true
  kill -KILL -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 10); do
    pgrep -g "$pgid" >/dev/null 2>&1 || { rm -f "$PIDFILE"; echo "airflow stopped (killed)"; return 0; }
    sleep 1
  done
  echo "process group $pgid survived KILL" >&2
  exit 1
}

# The nightly chain once, now, run by this Airflow's scheduler (infra/airflow_nightly.py): unpause the
# DAGs, trigger lakecdp_retrain with its data interval ending at AS_OF (default: the lake's newest
# event), then follow the runs the assets trigger. A scheduled run's as-of is its cron time, which a
# lake whose events stopped earlier does not reach: retrain then skips and score refuses (models.freshness).
nightly() {
  start
  cd "$REPO"
  "$VENV/bin/python" "$REPO/infra/airflow_nightly.py" "${1:-}"
}

status() {
  if pgid="$(running_pgid)"; then
    if healthy; then state="healthy"; else state="starting or unhealthy"; fi
    echo "airflow running (process group $pgid, $state): http://127.0.0.1:$PORT"
  else
    echo "airflow is not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  nightly) nightly "${2:-}" ;;
  *) echo "usage: $0 start|stop|status|nightly [AS_OF]" >&2; exit 2 ;;
esac
