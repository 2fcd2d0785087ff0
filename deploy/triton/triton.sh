#!/usr/bin/env bash
# Local NVIDIA Triton Inference Server (2.51, from the `nvidia-pytriton` PyPI wheel) for visearch, CPU only.
#
#   deploy/triton/triton.sh up [MODEL_REPOSITORY]   start in the background, wait until ready, print the
#                                                   gRPC address (alone on stdout; progress on stderr)
#   deploy/triton/triton.sh down                    stop it (SIGTERM, then SIGKILL after 30 s)
#   deploy/triton/triton.sh status                  exit 0 running and ready, 3 not running,
#                                                   4 running but not ready (loading models?)
#   deploy/triton/triton.sh logs [-f] [N]           last N (default 60) lines of the server log; -f follows it
#
# MODEL_REPOSITORY defaults to $VISEARCH_TRITON_REPOSITORY, else <var>/triton/models. Everything else lives
# under ${VISEARCH_VAR_DIR:-<repo>/var}/triton: venv/ (its own Python env: nvidia-pytriton, numpy<2,
# onnxruntime), logs/, triton.pid, triton.run. Only the python backend exists in this build; its model.py
# files import numpy/onnxruntime from venv/. See deploy/triton/README.md.
set -euo pipefail

PYTRITON_VERSION="0.7.0"      # nvidia-pytriton 0.7.0 ships tritonserver 2.51.0 (python backend only)
NUMPY_SPEC="numpy<2"          # nvidia-pytriton requires numpy<2
ONNXRUNTIME_VERSION="1.31.1"  # same as the project's .venv, so Triton and in-process results match
TRITON_SERVER_VERSION="2.51.0"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
VAR_DIR="${VISEARCH_VAR_DIR:-$REPO_ROOT/var}"
case "$VAR_DIR" in /*) ;; *) VAR_DIR="$REPO_ROOT/$VAR_DIR" ;; esac
HOME_DIR="$VAR_DIR/triton"
VENV="$HOME_DIR/venv"
PID_FILE="$HOME_DIR/triton.pid"
RUN_FILE="$HOME_DIR/triton.run"
LOG_DIR="$HOME_DIR/logs"
LOG_FILE="$LOG_DIR/tritonserver.log"
HTTP_PORT="${VISEARCH_TRITON_HTTP_PORT:-8000}"
GRPC_PORT="${VISEARCH_TRITON_GRPC_PORT:-8001}"
METRICS_PORT="${VISEARCH_TRITON_METRICS_PORT:-8002}"
START_TIMEOUT="${VISEARCH_TRITON_START_TIMEOUT:-120}"
STOP_TIMEOUT="${VISEARCH_TRITON_STOP_TIMEOUT:-30}"
PYTHON="${VISEARCH_TRITON_PYTHON:-python3}"
EXTRA_ARGS="${VISEARCH_TRITON_EXTRA_ARGS:-}"

say() { echo "triton: $*" >&2; }
die() { echo "triton: $*" >&2; exit 1; }

# Paths inside the venv (valid once it exists).
site_packages() { "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
server_dist() { echo "$(site_packages)/pytriton/tritonserver"; }

# The ports/repository of the instance that is running, when there is one (they may differ from the env's).
load_run_state() {
  [[ -f "$RUN_FILE" ]] || return 0
  local key value
  while IFS='=' read -r key value; do
    case "$key" in
      http_port) HTTP_PORT="$value" ;;
      grpc_port) GRPC_PORT="$value" ;;
      metrics_port) METRICS_PORT="$value" ;;
      repository) RUNNING_REPOSITORY="$value" ;;
    esac
  done < "$RUN_FILE"
  return 0
}
RUNNING_REPOSITORY=""

grpc_address() { echo "127.0.0.1:$GRPC_PORT"; }

# The recorded PID, if that process is alive and really is this venv's tritonserver (guards against PID reuse).
server_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' < "$PID_FILE")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == "$VENV/"*"/pytriton/tritonserver/bin/tritonserver "* ]] || return 1
  echo "$pid"
}

# $1 and all its descendants (the python-backend stubs are tritonserver's children), from /proc, never by name.
tree_pids() {
  local root="$1" stat pid ppid rest
  local -A children=()
  for stat in /proc/[0-9]*/stat; do
    { read -r rest < "$stat"; } 2>/dev/null || continue
    pid="${stat#/proc/}"; pid="${pid%/stat}"
    rest="${rest##*) }"                        # fields after "(comm) ": state ppid ...
    read -r _ ppid _ <<< "$rest"
    children["$ppid"]+=" $pid"
  done
  local -a queue=("$root") out=("$root")
  while ((${#queue[@]})); do
    local cur="${queue[0]}"; queue=("${queue[@]:1}")
    for pid in ${children[$cur]:-}; do out+=("$pid"); queue+=("$pid"); done
  done
  echo "${out[@]}"
}

# Alive and not a zombie (an exited child not yet reaped still has a /proc entry).
alive() {
  local rest
  { read -r rest < "/proc/$1/stat"; } 2>/dev/null || return 1
  rest="${rest##*) }"
  [[ "${rest%% *}" != Z ]]
}
alive_among() { local p; for p in "$@"; do alive "$p" && echo "$p"; done; return 0; }

# HTTP GET http://127.0.0.1:$HTTP_PORT$1, success iff status 200 (the venv's Python: no curl needed).
http_ok() {
  [[ -x "$VENV/bin/python" ]] || return 1
  "$VENV/bin/python" - "http://127.0.0.1:$HTTP_PORT$1" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

venv_ok() {
  [[ -x "$VENV/bin/python" ]] &&
    "$VENV/bin/python" - "$PYTRITON_VERSION" "$ONNXRUNTIME_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import numpy
ok = (version("nvidia-pytriton") == sys.argv[1] and version("onnxruntime") == sys.argv[2]
      and int(numpy.__version__.split(".")[0]) < 2)
sys.exit(0 if ok else 1)
EOF
}

ensure_venv() {
  if ! venv_ok; then
    say "creating $VENV: nvidia-pytriton==$PYTRITON_VERSION, $NUMPY_SPEC, onnxruntime==$ONNXRUNTIME_VERSION"
    local pyver
    pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" ||
      die "no Python interpreter '$PYTHON' (set VISEARCH_TRITON_PYTHON)"
    case "$pyver" in
      3.11|3.12) ;;
      *) die "'$PYTHON' is Python $pyver; the Triton venv needs 3.11 or 3.12 (onnxruntime $ONNXRUNTIME_VERSION" \
             "needs >=3.11, numpy<2 has no wheels past 3.12): set VISEARCH_TRITON_PYTHON" ;;
    esac
    mkdir -p "$HOME_DIR"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      "nvidia-pytriton==$PYTRITON_VERSION" "$NUMPY_SPEC" "onnxruntime==$ONNXRUNTIME_VERSION"
    venv_ok || die "nvidia-pytriton==$PYTRITON_VERSION / onnxruntime==$ONNXRUNTIME_VERSION did not install into $VENV"
  fi
  # The wheel ships one python-backend stub per Python version (python_backend_stubs/3.X/); the backend
  # expects it next to libtriton_python.so. Same directory depth, so the stub's RPATH
  # ($ORIGIN/../../../../nvidia_pytriton.libs) still resolves. PyTriton does the same in its workspace.
  local dist pyver src dst
  dist="$(server_dist)"
  pyver="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  src="$dist/python_backend_stubs/$pyver/triton_python_backend_stub"
  dst="$dist/backends/python/triton_python_backend_stub"
  [[ -x "$src" ]] || die "nvidia-pytriton $PYTRITON_VERSION has no python-backend stub for Python $pyver"
  if ! cmp -s "$src" "$dst"; then cp "$src" "$dst.tmp" && mv -f "$dst.tmp" "$dst"; fi
}

# The directory holding the venv interpreter's own libpython3.X.so.1.0. The stub links libpython3.X.so.1.0
# by soname; without this it would pick the system's (e.g. Debian's /usr/lib, another patch release and
# prefix) instead of the interpreter the venv was made from.
python_libdir() {
  "$VENV/bin/python" - <<'EOF'
import os, sys, sysconfig
libdir = sysconfig.get_config_var("LIBDIR") or ""
soname = "libpython%d.%d.so.1.0" % sys.version_info[:2]
if libdir and os.path.exists(os.path.join(libdir, soname)):
    print(libdir)
EOF
}

# Fail early (with a clear message) when a port is already taken on 127.0.0.1.
check_ports_free() {
  "$VENV/bin/python" - "$HTTP_PORT" "$GRPC_PORT" "$METRICS_PORT" <<'EOF'
import socket, sys
busy = []
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        busy.append(port)
    finally:
        s.close()
if busy:
    print("triton: port(s) already in use on 127.0.0.1: %s" % ", ".join(map(str, busy)), file=sys.stderr)
    sys.exit(1)
EOF
}

# Last lines of the server log (current run only: from its last "===== ... triton.sh up" header).
show_logs() {
  local n="${1:-60}" with_errors="${2:-0}"
  [[ -f "$LOG_FILE" ]] || { echo "(no log at $LOG_FILE)"; return 0; }
  local run
  run="$(awk '/^===== .* triton.sh up/ {buf = ""} {buf = buf $0 "\n"} END {printf "%s", buf}' "$LOG_FILE")"
  if [[ "$with_errors" == 1 ]] && grep -qE '^(E[0-9]{4} |error:)' <<< "$run"; then
    echo "----- errors of the last run ($LOG_FILE)"
    grep -E '^(E[0-9]{4} |error:)' <<< "$run" | grep -v 'CudaDriverHelper has not been initialized' | tail -n 10 | cut -c1-600
  fi
  echo "----- $LOG_FILE (last $n lines of the last run)"
  tail -n "$n" <<< "$run" | cut -c1-400
}

cmd_status() {
  load_run_state
  local pid
  if ! pid="$(server_pid)"; then
    echo "triton: not running"
    return 3
  fi
  if http_ok /v2/health/ready; then
    echo "triton: running, ready: pid $pid, gRPC $(grpc_address), HTTP 127.0.0.1:$HTTP_PORT," \
      "metrics 127.0.0.1:$METRICS_PORT, repository ${RUNNING_REPOSITORY:-?}"
    return 0
  fi
  echo "triton: running but not ready (loading models?): pid $pid, HTTP 127.0.0.1:$HTTP_PORT"
  return 4
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    alive "$pid" || { say "tritonserver (pid $pid) exited"; return 1; }
    http_ok /v2/health/ready && return 0
    sleep 0.5
  done
  say "not ready after ${START_TIMEOUT}s"
  return 1
}

resolve_repository() {
  local repo
  if [[ -n "${1:-}" ]]; then
    repo="$1"                                             # an argument: relative to the caller's directory
  elif [[ -n "${VISEARCH_TRITON_REPOSITORY:-}" ]]; then
    repo="$VISEARCH_TRITON_REPOSITORY"
    case "$repo" in /*) ;; *) repo="$REPO_ROOT/$repo" ;; esac   # like VISEARCH_VAR_DIR: relative to the repo
  else
    repo="$VAR_DIR/triton/models"
  fi
  [[ -d "$repo" ]] || die "model repository $repo does not exist (make triton-up writes var/triton/models)"
  (cd "$repo" && pwd -P)
}

cmd_up() {
  (($# <= 1)) || die "up: at most one argument (the model repository)"
  local repo pid t0=$SECONDS
  repo="$(resolve_repository "${1:-}")"
  if pid="$(server_pid)"; then
    load_run_state
    if [[ -n "$RUNNING_REPOSITORY" && "$RUNNING_REPOSITORY" != "$repo" ]]; then
      die "already running (pid $pid) with another model repository, $RUNNING_REPOSITORY; run 'down' first"
    fi
    if http_ok /v2/health/ready; then
      say "already running and ready: pid $pid, gRPC $(grpc_address), repository $repo" \
        "(models are read at start: down + up to load changed ones)"
      grpc_address
      return 0
    fi
    say "pid $pid is running but not ready yet; waiting up to ${START_TIMEOUT}s"
    if wait_ready "$pid"; then say "ready: gRPC $(grpc_address)"; grpc_address; return 0; fi
    show_logs 40 1 >&2
    return 1
  fi
  rm -f "$PID_FILE" "$RUN_FILE"
  ensure_venv
  check_ports_free || exit 1
  local dist libdir
  dist="$(server_dist)"
  libdir="$(python_libdir)"
  [[ -n "$libdir" ]] || say "warning: $("$VENV/bin/python" -c 'import sys; print(sys.executable)') has no shared" \
    "libpython; the python-backend stub will use the system's libpython of the same version, if any"
  mkdir -p "$LOG_DIR"
  [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
  echo "===== $(date -Is) triton.sh up: repository $repo" > "$LOG_FILE"
  say "starting Triton $TRITON_SERVER_VERSION: gRPC 127.0.0.1:$GRPC_PORT, HTTP 127.0.0.1:$HTTP_PORT," \
    "metrics 127.0.0.1:$METRICS_PORT, repository $repo"
  # Environment of the server and so of its python-backend stubs:
  # - PATH starts with the venv's bin/: the stub embeds Python with program name "python3", which Python's
  #   path setup looks up on PATH; it finds venv/bin/python3 and its pyvenv.cfg, so sys.prefix is the venv
  #   and the venv's site-packages (numpy<2, onnxruntime) are importable. (PYTHONPATH is NOT honoured by
  #   the stub.) PYTHONHOME/PYTHONPATH are cleared so nothing overrides that.
  # - LD_LIBRARY_PATH starts with the interpreter's LIBDIR (see python_libdir).
  # setsid: its own session, so a Ctrl-C in the shell that ran `up` does not reach it.
  # --allow-gpu-metrics=false and no pinned/CUDA pools: there is no GPU here.
  # shellcheck disable=SC2086  # EXTRA_ARGS is word-split on purpose
  env -u PYTHONHOME -u PYTHONPATH \
    PATH="$VENV/bin:$PATH" \
    LD_LIBRARY_PATH="${libdir:+$libdir:}${LD_LIBRARY_PATH:-}" \
    setsid "$dist/bin/tritonserver" \
    --model-repository="$repo" \
    --backend-directory="$dist/backends" \
    --cache-directory="$dist/caches" \
    --http-address=127.0.0.1 --http-port="$HTTP_PORT" \
    --grpc-address=127.0.0.1 --grpc-port="$GRPC_PORT" \
    --metrics-address=127.0.0.1 --metrics-port="$METRICS_PORT" \
    --allow-metrics=true --allow-cpu-metrics=true --allow-gpu-metrics=false \
    --pinned-memory-pool-byte-size=0 \
    --exit-on-error=true --strict-readiness=true \
    --exit-timeout-secs="$((STOP_TIMEOUT > 5 ? STOP_TIMEOUT - 5 : STOP_TIMEOUT))" \
    $EXTRA_ARGS \
    >> "$LOG_FILE" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$PID_FILE"
  printf 'pid=%s\nhttp_port=%s\ngrpc_port=%s\nmetrics_port=%s\nrepository=%s\n' \
    "$pid" "$HTTP_PORT" "$GRPC_PORT" "$METRICS_PORT" "$repo" > "$RUN_FILE"
  if wait_ready "$pid"; then
    say "ready after $((SECONDS - t0))s: pid $pid, gRPC $(grpc_address)"
    grpc_address
    return 0
  fi
  show_logs 40 1 >&2
  if alive "$pid"; then say "stopping the failed start"; cmd_down >&2 || true; fi
  rm -f "$PID_FILE" "$RUN_FILE"
  return 1
}

cmd_down() {
  (($# == 0)) || die "down: takes no arguments"
  local pid
  if ! pid="$(server_pid)"; then
    say "not running"
    rm -f "$PID_FILE" "$RUN_FILE"
    return 0
  fi
  local -a pids
  read -r -a pids <<< "$(tree_pids "$pid")"
  local -a regions=()
  local p arg
  for p in "${pids[@]}"; do
    while IFS= read -r -d '' arg; do
      [[ "$arg" =~ ^triton_python_backend_shm_region_[0-9a-f-]+$ ]] && regions+=("$arg")
    done 2>/dev/null < "/proc/$p/cmdline" || true
  done
  say "stopping pid $pid (and its ${#pids[@]} process(es) tree: ${pids[*]})"
  kill -TERM "$pid" 2>/dev/null || true   # tritonserver unloads the models, which stops their stubs
  local deadline=$((SECONDS + STOP_TIMEOUT))
  local -a left=()
  while ((SECONDS < deadline)); do
    mapfile -t left < <(alive_among "${pids[@]}")
    ((${#left[@]})) || break
    if ! alive "$pid"; then kill -TERM "${left[@]}" 2>/dev/null || true; fi  # server gone, stubs not
    sleep 0.5
  done
  mapfile -t left < <(alive_among "${pids[@]}")
  if ((${#left[@]})); then
    say "still running after ${STOP_TIMEOUT}s, SIGKILL: ${left[*]}"
    kill -KILL "${left[@]}" 2>/dev/null || true
    sleep 0.5
  fi
  # A killed stub leaves its shared-memory region in /dev/shm (its name, with a UUID, is a stub argument).
  local region
  for region in "${regions[@]}"; do
    [[ -e "/dev/shm/$region" ]] && { say "removing leftover /dev/shm/$region"; rm -f "/dev/shm/$region"; }
  done
  rm -f "$PID_FILE" "$RUN_FILE"
  say "stopped"
  return 0
}

cmd_logs() {
  local follow=0 n=60 arg
  for arg in "$@"; do
    case "$arg" in -f|--follow) follow=1 ;; [0-9]*) n="$arg" ;; *) die "logs: unknown option $arg" ;; esac
  done
  if ((follow)); then exec tail -n "$n" -F "$LOG_FILE"; fi
  show_logs "$n"
}

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  logs) shift; cmd_logs "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
