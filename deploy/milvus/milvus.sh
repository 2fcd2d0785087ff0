#!/usr/bin/env bash
# Local Milvus standalone server (Milvus 2.3, from the `milvus` PyPI package) for visearch.
#
#   deploy/milvus/milvus.sh up               start in the background, wait until ready, print the URI
#                                            (the URI alone on stdout, progress on stderr)
#   deploy/milvus/milvus.sh down [--purge]   stop it (--purge: also delete its data)
#   deploy/milvus/milvus.sh status           exit 0 running and ready, 3 not running, 4 running but not answering
#   deploy/milvus/milvus.sh logs [-f] [N]    last N (default 60) lines of the logs; -f follows them
#
# Everything lives under ${VISEARCH_VAR_DIR:-<repo>/var}/milvus: venv/ (its own Python env with the pinned
# package), bin/ (server binary + libraries extracted from the wheel), configs/, data/, logs/, milvus.pid.
# See deploy/milvus/README.md for the environment variables.
set -euo pipefail

MILVUS_VERSION="2.3.5"  # the `milvus` package on PyPI: Milvus 2.3.5 standalone, embedded etcd, local storage

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
VAR_DIR="${VISEARCH_VAR_DIR:-$REPO_ROOT/var}"
case "$VAR_DIR" in /*) ;; *) VAR_DIR="$REPO_ROOT/$VAR_DIR" ;; esac
HOME_DIR="$VAR_DIR/milvus"
VENV="$HOME_DIR/venv"
PID_FILE="$HOME_DIR/milvus.pid"
RUN_FILE="$HOME_DIR/milvus.run.json"
LOG_DIR="$HOME_DIR/logs"
LAUNCHER_LOG="$LOG_DIR/launcher.log"
LAUNCHER="$SCRIPT_DIR/launcher.py"
PORT="${VISEARCH_MILVUS_PORT:-19530}"
HEALTH_PORT="${VISEARCH_MILVUS_HEALTH_PORT:-9091}"
START_TIMEOUT="${VISEARCH_MILVUS_START_TIMEOUT:-120}"
STOP_TIMEOUT="${VISEARCH_MILVUS_STOP_TIMEOUT:-30}"
WAIT_LOADED="${VISEARCH_MILVUS_WAIT_LOADED:-1}"
PYTHON="${VISEARCH_MILVUS_PYTHON:-python3}"

say() { echo "milvus: $*" >&2; }
die() { echo "milvus: $*" >&2; exit 1; }

# The ports of the instance that is running, when there is one (they may differ from the environment's).
load_run_state() {
  if [[ -f "$RUN_FILE" ]]; then
    local p h
    p="$(sed -n 's/.*"port": \([0-9]*\).*/\1/p' "$RUN_FILE")"
    h="$(sed -n 's/.*"health_port": \([0-9]*\).*/\1/p' "$RUN_FILE")"
    [[ -n "$p" ]] && PORT="$p"
    [[ -n "$h" ]] && HEALTH_PORT="$h"
  fi
  return 0
}

uri() { echo "http://127.0.0.1:$PORT"; }

# The Milvus server PID recorded by the launcher, if that process is alive and is this home's binary. It can
# outlive its launcher briefly (SIGKILLed launcher: the server gets SIGTERM and stops within ~10 s).
server_pid() {
  [[ -f "$RUN_FILE" ]] || return 1
  local pid
  pid="$(sed -n 's/.*"milvus_pid": \([0-9]*\).*/\1/p' "$RUN_FILE")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$HOME_DIR/bin/milvus" || return 1
  echo "$pid"
}

# The recorded PID, if that process is alive and is really our launcher (guards against PID reuse).
launcher_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' < "$PID_FILE")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$LAUNCHER" || return 1
  echo "$pid"
}

# PIDs of the launcher's process group and of all its descendants (from /proc, never by name).
family_pids() {
  local root="$1"
  local -A seen=(["$root"]=1)
  local -a queue=("$root") out=("$root")
  local stat pid ppid pgid rest
  local -A children=()
  for stat in /proc/[0-9]*/stat; do
    read -r rest < "$stat" 2>/dev/null || continue
    pid="${stat#/proc/}"; pid="${pid%/stat}"
    rest="${rest##*) }"                        # fields after "(comm) ": state ppid pgrp ...
    read -r _ ppid pgid _ <<< "$rest"
    children["$ppid"]+=" $pid"
    if [[ "$pgid" == "$root" && -z "${seen[$pid]:-}" ]]; then seen["$pid"]=1; out+=("$pid"); fi
  done
  while ((${#queue[@]})); do
    local cur="${queue[0]}"; queue=("${queue[@]:1}")
    for pid in ${children[$cur]:-}; do
      [[ -n "${seen[$pid]:-}" ]] && continue
      seen["$pid"]=1; out+=("$pid"); queue+=("$pid")
    done
  done
  echo "${out[@]}"
}

alive_among() { local p; for p in "$@"; do [[ -d "/proc/$p" ]] && echo "$p"; done; return 0; }

probe() { "$VENV/bin/python" "$LAUNCHER" probe --port "$PORT" --health-port "$HEALTH_PORT" "$@" 2>/dev/null; }

venv_ok() {
  [[ -x "$VENV/bin/python" ]] &&
    "$VENV/bin/python" -c "import milvus, sys; sys.exit(milvus.__version__ != '$MILVUS_VERSION')" 2>/dev/null
}

ensure_venv() {
  venv_ok && return 0
  say "creating $VENV with milvus==$MILVUS_VERSION"
  mkdir -p "$HOME_DIR"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "milvus==$MILVUS_VERSION"
  venv_ok || die "milvus==$MILVUS_VERSION did not install into $VENV"
}

# Last lines of the launcher log and of Milvus' stderr (both: current run only) and of Milvus' own log
# (the newest standalone-<node>.log); long lines cut. $2: an epoch; logs not written since are skipped.
show_logs() {
  local n="${1:-60}" since="${2:-0}" f
  since_run() {  # the part of $1 after its last line matching $2
    awk -v pat="$2" '$0 ~ pat {buf = ""} {buf = buf $0 "\n"} END {printf "%s", buf}' "$1" | tail -n "$n" | cut -c1-400
  }
  fresh() { [[ -f "$1" ]] && (( $(stat -c %Y "$1") >= since )); }
  if fresh "$LAUNCHER_LOG"; then
    echo "----- $LAUNCHER_LOG (last run)"
    since_run "$LAUNCHER_LOG" '^===== .* milvus.sh up$'
  fi
  f="$(ls -t "$LOG_DIR"/standalone-*.log 2>/dev/null | head -n 1 || true)"
  if [[ -n "$f" ]] && fresh "$f"; then
    echo "----- $f (last $n lines)"
    tail -n "$n" "$f" | cut -c1-400
  fi
  if fresh "$LOG_DIR/milvus-stderr.log"; then
    echo "----- $LOG_DIR/milvus-stderr.log (last run)"
    since_run "$LOG_DIR/milvus-stderr.log" '^===== .* launcher [0-9]+ starting'
  fi
}

cmd_status() {
  load_run_state
  local pid
  if ! pid="$(launcher_pid)"; then
    if pid="$(server_pid)"; then
      echo "milvus: not running ($(uri)); its server pid $pid is still shutting down"
    else
      echo "milvus: not running ($(uri))"
    fi
    return 3
  fi
  local isolation
  isolation="$(sed -n 's/.*"isolation": "\([a-z]*\)".*/\1/p' "$RUN_FILE" 2>/dev/null || true)"
  if probe; then
    echo "milvus: running, ready: pid $pid, $(uri) (isolation: ${isolation:-?})"
    return 0
  fi
  echo "milvus: running but not answering (starting?): pid $pid, $(uri)"
  return 4
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if probe $( ((WAIT_LOADED)) && echo --wait-loaded ); then return 0; fi
    [[ -d "/proc/$pid" ]] || { echo "milvus: the launcher (pid $pid) exited" >&2; return 1; }
    sleep 1
  done
  echo "milvus: not ready after ${START_TIMEOUT}s" >&2
  return 1
}

cmd_up() {
  local pid t0=$SECONDS started
  started="$(date +%s)"
  if pid="$(launcher_pid)"; then
    load_run_state
    if probe; then say "already running: pid $pid, $(uri)"; echo "$(uri)"; return 0; fi
    say "pid $pid is running but not ready yet; waiting up to ${START_TIMEOUT}s"
    if wait_ready "$pid"; then say "ready: $(uri)"; echo "$(uri)"; return 0; fi
    show_logs 30 >&2
    return 1
  fi
  if server_pid > /dev/null; then cmd_down; fi  # a leftover server still owns the data dir: stop it first
  rm -f "$PID_FILE" "$RUN_FILE"
  ensure_venv
  mkdir -p "$LOG_DIR" "$HOME_DIR/data"
  say "starting Milvus $MILVUS_VERSION on 127.0.0.1:$PORT (health 127.0.0.1:$HEALTH_PORT), data $HOME_DIR/data"
  echo "===== $(date -Is) milvus.sh up" >> "$LAUNCHER_LOG"
  # nohup execs python: $! is the launcher itself, which then makes itself a session/process-group leader.
  nohup "$VENV/bin/python" "$LAUNCHER" run --home "$HOME_DIR" --port "$PORT" --health-port "$HEALTH_PORT" \
    >> "$LAUNCHER_LOG" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$PID_FILE"
  if wait_ready "$pid"; then
    say "ready after $((SECONDS - t0))s: pid $pid, $(uri)"
    echo "$(uri)"
    return 0
  fi
  show_logs 30 "$started" >&2
  [[ -d "/proc/$pid" ]] && { say "stopping the failed start" >&2; cmd_down >&2 || true; }
  return 1
}

cmd_down() {
  local purge=0 pid arg
  for arg in "$@"; do
    case "$arg" in --purge) purge=1 ;; *) die "down: unknown option $arg" ;; esac
  done
  if pid="$(launcher_pid)"; then
    local -a pids
    read -r -a pids <<< "$(family_pids "$pid")"
    say "stopping pid $pid (and ${#pids[@]} process(es) in its group/tree: ${pids[*]})"
    kill -TERM "$pid" 2>/dev/null || true   # the launcher forwards SIGTERM to milvus and waits for it
    local deadline=$((SECONDS + STOP_TIMEOUT)) left
    while ((SECONDS < deadline)); do
      left="$(alive_among "${pids[@]}")"
      [[ -z "$left" ]] && break
      # milvus is the launcher's child: if the launcher is gone but milvus is not, signal it directly
      [[ -d "/proc/$pid" ]] || kill -TERM $left 2>/dev/null || true
      sleep 0.5
    done
    left="$(alive_among "${pids[@]}")"
    if [[ -n "$left" ]]; then
      say "still running after ${STOP_TIMEOUT}s, SIGKILL: $(echo $left)"
      kill -KILL $left 2>/dev/null || true
      sleep 0.5
    fi
    say "stopped"
  elif pid="$(server_pid)"; then
    say "launcher gone, stopping its leftover Milvus server pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while ((SECONDS < deadline)) && [[ -d "/proc/$pid" ]]; do sleep 0.5; done
    if [[ -d "/proc/$pid" ]]; then say "SIGKILL $pid"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
    say "stopped"
  else
    say "not running"
  fi
  rm -f "$PID_FILE" "$RUN_FILE"
  if ((purge)); then
    rm -rf "$HOME_DIR/data"
    say "purged $HOME_DIR/data"
  fi
  return 0
}

cmd_logs() {
  local follow=0 n=60 arg
  for arg in "$@"; do
    case "$arg" in -f|--follow) follow=1 ;; [0-9]*) n="$arg" ;; *) die "logs: unknown option $arg" ;; esac
  done
  if ((follow)); then
    local f
    f="$(ls -t "$LOG_DIR"/standalone-*.log 2>/dev/null | head -n 1 || true)"
    exec tail -n "$n" -F "$LAUNCHER_LOG" "$LOG_DIR/milvus-stderr.log" ${f:+"$f"}
  fi
  show_logs "$n"
}

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  logs) shift; cmd_logs "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
