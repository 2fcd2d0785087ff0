#!/usr/bin/env python3
"""Run Milvus standalone (from the ``milvus`` PyPI package) in the foreground, reachable on 127.0.0.1 only.

Started by ``deploy/milvus/milvus.sh up`` with the interpreter of the dedicated venv (var/milvus/venv),
never with the project's .venv. This process is the one whose PID milvus.sh records; it

1. uses the package's own API (``milvus.MilvusServerConfig`` and ``milvus._initialize_data_files``) to
   write ``<home>/configs/milvus.yaml`` and to extract the server binary and its shared libraries from the
   wheel into ``<home>/bin`` (only when they changed: the package keeps an md5 per file);
2. starts ``<home>/bin/milvus run standalone`` as its child, the way ``MilvusServer.start`` does
   (cwd ``<home>``, ``LD_LIBRARY_PATH=<home>/bin``, ``DEPLOY_MODE=STANDALONE``, ``METRICS_PORT``),
   with stdout/stderr appended to ``<home>/logs/milvus-std{out,err}.log``;
3. forwards SIGTERM/SIGINT to that child, waits for it and exits with its status.

Why a network namespace: Milvus 2.3 listens on the wildcard address (``*:19530``, ``*:9091`` and seven
internal gRPC ports); its ``<role>.ip`` settings only change the advertised address. With
``--isolation netns`` (the default when the kernel allows it) this launcher binds the two public ports on
127.0.0.1 in the host namespace first, then moves itself into a new, private network namespace (only
``lo``), starts Milvus there and relays TCP between the two. Nothing of Milvus is reachable from another
host, and its internal ports (etcd 2379/2380, 53100, 19529, 19531, 13333, 21121, 21123, 21124) cannot
collide with anything on this machine. ``--isolation none`` runs Milvus in the host
namespace (wildcard listeners, as upstream does). The same unshare also gives the server a private mount
namespace in which ``<home>/run`` and ``<home>/tmp`` are bound over the binary's fixed ``/run/milvus``
(pid-file lock) and ``/tmp/milvus`` (server_id files), so instances do not collide and no file is
written outside ``<home>`` (the two directories are created empty as mount points when missing). As non-root, a user namespace is created too (uid mapped to root inside).

``probe`` mode (``launcher.py probe --port P --health-port H``) is the readiness check used by milvus.sh:
GET /healthz on the health port must say OK and a real API call (the REST ``/v1/vector/collections``
served on the gRPC port) must answer with code 200; with ``--wait-loaded`` no collection may still be in
``LoadStateLoading`` (after a restart Milvus reloads the collections that were loaded, which takes a
moment after /healthz is already OK).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import fcntl
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from os.path import join

LOOPBACK = "127.0.0.1"
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
# Fixed paths of the Milvus 2.3 binary (MILVUS_RUN_DIR is not read by it): the run dir with the pid-file lock
# (/run/milvus, or /tmp/milvus when that cannot be created) and /tmp/milvus for its server_id_<pid> files.
FIXED_DIRS = ("/run/milvus", "/tmp/milvus")
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
# milvus.yaml settings applied on top of the package's template (VISEARCH_MILVUS_SETTINGS and --set override).
# proxy.timeTickInterval: reads with consistency_level Strong/Session wait for the next time tick after the
# request's timestamp. Measured here (Strong get/count p50; idle CPU of the server): upstream 200 ms ->
# 200-400 ms reads, ~5% of a core; 50 ms -> ~100 ms, ~9%; 20 ms -> 20-40 ms, ~10%; 10 ms -> ~20 ms, ~20%.
# queryNode.gracefulStopTimeout: on SIGTERM Milvus 2.3 standalone stops its coordinators first, then the
# query node waits (default 30 s, then more) for its loaded segments to be moved to another node, which
# cannot happen on a single node; unflushed rows are safe in rocksmq either way (replayed at start).
# common.gracefulStopTimeout: the stop sequence sometimes hangs for good (seen in QueryCoord's stop after a
# drop_collection); upstream waits 1800 s before forcing the exit, we let Milvus force it after 10 s.
# common.session.ttl: a stop does not always revoke the nodes' etcd sessions; at the next start QueryCoord
# waits for the stale ones to expire before it reloads the collections (up to the TTL, upstream 30 s).
# log.stdout: the rotated file logs/standalone-<node>.log already has everything.
DEFAULT_SETTINGS = {
    "proxy.timeTickInterval": "20",
    "queryNode.gracefulStopTimeout": "2",
    "common.gracefulStopTimeout": "10",
    "common.session.ttl": "10",
    "log.stdout": "false",
}
# Every Milvus role that has an "ip" setting: advertise loopback instead of "the first unicast address".
ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")


def log(msg: str) -> None:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] launcher[{os.getpid()}]: {msg}", flush=True)


# --------------------------------------------------------------------------------------------- netns
def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _unshare(flags: int) -> None:
    if _libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(0x{flags:x}): {os.strerror(err)}")


def _mount(src: str | None, dst: str, flags: int) -> None:
    if _libc().mount(src.encode() if src else None, dst.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {dst}: {os.strerror(err)}")


def private_fixed_dirs(home: str) -> list[str]:
    """In our own mount namespace, bind <home>/run over /run/milvus and <home>/tmp over /tmp/milvus, so this
    instance's pid-file lock and server_id files are its own (a second instance, e.g. on other ports, does
    not collide; a non-root user is not blocked by root-owned directories). Returns what was bound."""
    _mount(None, "/", MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
    bound = []
    for fixed in FIXED_DIRS:
        mine = join(home, os.path.basename(os.path.dirname(fixed)))  # <home>/run, <home>/tmp
        os.makedirs(mine, exist_ok=True)
        try:
            os.makedirs(fixed, exist_ok=True)
            _mount(mine, fixed, MS_BIND)
            bound.append(f"{fixed} -> {mine}")
        except OSError as exc:  # e.g. non-root and /run not writable: Milvus falls back to /tmp/milvus
            log(f"not binding {fixed}: {exc}")
    return bound


def enter_private_netns() -> str:
    """Move this (still single-threaded) process into a new network + mount namespace; bring ``lo`` up.

    As root: plain namespaces. Otherwise: a user namespace (this uid mapped to root inside) too, which
    unprivileged users may create on most kernels.
    """
    if os.geteuid() == 0:
        _unshare(CLONE_NEWNET | CLONE_NEWNS)
        kind = "netns"
    else:
        uid, gid = os.geteuid(), os.getegid()
        _unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
        kind = "userns+netns"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack("16sH22x", ifr)[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    return kind


def listen_loopback(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"launcher: cannot listen on {LOOPBACK}:{port}: {exc} (is something else using it?)") from exc
    sock.listen(512)
    return sock


class Relay:
    """Accept on a socket of the host namespace, connect to 127.0.0.1:<port> of the private one, pump bytes.

    Threads (not asyncio): gRPC keeps a few long-lived HTTP/2 connections, and a blocking recv/sendall pair
    per direction adds the least latency. Every thread is created after ``enter_private_netns``, so the
    upstream sockets live in the private namespace while the listening socket stays in the host one.
    """

    def __init__(self, listener: socket.socket, upstream_port: int, name: str) -> None:
        self.listener, self.upstream_port, self.name = listener, upstream_port, name

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name=f"relay-{self.name}", daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((LOOPBACK, self.upstream_port), timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()  # Milvus not listening (yet): the client sees a closed connection and retries
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


# ------------------------------------------------------------------------------------------ config
def _try_bind_port(port: int):
    """``MilvusServerConfig.try_bind_port`` with SO_REUSEADDR (Milvus itself binds with it): a listening
    socket on 127.0.0.1:port, or None when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
        sock.listen()
        return sock
    except (OSError, OverflowError, ValueError):
        sock.close()
        return None


def prepare(home: str, grpc_port: int, health_port: int, netns: bool, extra: dict) -> tuple[str, dict]:
    """Write configs/milvus.yaml and extract bin/ with the package's API. Returns (executable, env)."""
    import milvus  # the package of the dedicated venv

    cfg = milvus.MilvusServerConfig(data_dir=home)  # data_dir: base for configs/, logs/, data/, bin/
    cfg.try_bind_port = _try_bind_port  # the package's check lacks SO_REUSEADDR: a just-stopped server's
    # TIME_WAIT connections would make it fail for the explicit proxy_port, or move the others to the next port
    cfg.update(proxy_port=grpc_port)  # explicit: resolve() fails if it cannot bind it
    # The other "*_port" items (etcd, coordinators, nodes) are resolved by the package from their defaults
    # to the first free port. In the private namespace every default is free.
    ports_env = {
        "root_coord_port": "VISEARCH_MILVUS_ROOT_COORD_PORT",
        "proxy_internal_port": "VISEARCH_MILVUS_PROXY_INTERNAL_PORT",
        "query_coord_port": "VISEARCH_MILVUS_QUERY_COORD_PORT",
        "query_node_port": "VISEARCH_MILVUS_QUERY_NODE_PORT",
        "index_coord_port": "VISEARCH_MILVUS_INDEX_COORD_PORT",
        "index_node_port": "VISEARCH_MILVUS_INDEX_NODE_PORT",
        "data_coord_port": "VISEARCH_MILVUS_DATA_COORD_PORT",
        "data_node_port": "VISEARCH_MILVUS_DATA_NODE_PORT",
    }
    if not netns:  # sharing the host namespace: let the user pin the internal ports
        for key, var in ports_env.items():
            if os.environ.get(var):
                cfg.update(**{key: int(os.environ[var])})
    cfg.resolve()  # checks/binds the ports, sets the storage paths under home, writes configs/milvus.yaml
    settings = {f"{role}.ip": LOOPBACK for role in ROLES}
    settings.update(extra)
    apply_settings(join(home, "configs", "milvus.yaml"), settings)
    milvus._initialize_data_files(home)  # lzma -> bin/ (skipped per file when its md5 is unchanged)
    exe = join(home, "bin", "milvus")
    env = os.environ.copy()
    env.update(
        {
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(health_port),
            "MILVUS_RUN_DIR": join(home, "run"),  # set as the package does; the 2.3.5 binary ignores it
            "LD_LIBRARY_PATH": ":".join(p for p in (join(home, "bin"), os.environ.get("LD_LIBRARY_PATH", "")) if p),
        }
    )
    ports = {k: cfg.get(k) for k in cfg.configurable_items if k.endswith("_port")}
    log(f"milvus {milvus.__version__}: config {join(home, 'configs', 'milvus.yaml')}, ports {ports}")
    return exe, env


def apply_settings(path: str, settings: dict) -> None:
    """Set dotted keys (``queryNode.gracefulStopTimeout``) in milvus.yaml: replace the value of a key that
    is there, add one that is not under its deepest existing parent section (the package's own
    ``MilvusServerConfig.set`` can only replace keys that the template already has)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    todo = {k: str(v) for k, v in settings.items()}
    stack: list[tuple[int, str]] = []  # (indent, key) of the current path
    where: dict[str, int] = {}  # dotted path -> line index
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped or stripped.startswith("-"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        key = stripped.split(":", 1)[0].strip()
        if not key.replace("_", "").replace("-", "").isalnum():
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        where[dotted] = i
        if dotted in todo:
            comment = ""
            rest = stripped.split(":", 1)[1]
            if " #" in rest:
                comment = "  #" + rest.split(" #", 1)[1]
            lines[i] = f"{' ' * indent}{key}: {todo.pop(dotted)}{comment}"
    inserts: list[tuple[int, str]] = []
    for dotted, value in todo.items():
        parts = dotted.split(".")
        depth = len(parts) - 1
        while depth and ".".join(parts[:depth]) not in where:
            depth -= 1
        if depth:
            at = where[".".join(parts[:depth])]
            indent = len(lines[at]) - len(lines[at].lstrip(" "))
            block = [f"{' ' * (indent + 2 * (j - depth + 1))}{parts[j]}:" for j in range(depth, len(parts) - 1)]
            block.append(f"{' ' * (indent + 2 * (len(parts) - depth))}{parts[-1]}: {value}")
            inserts.append((at + 1, "\n".join(block)))
        else:
            block = [f"{'  ' * j}{parts[j]}:" for j in range(len(parts) - 1)]
            block.append(f"{'  ' * (len(parts) - 1)}{parts[-1]}: {value}")
            inserts.append((len(lines), "\n".join(block)))
    for at, text in sorted(inserts, reverse=True):
        lines.insert(at, text)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def prepare_in_child(home: str, grpc_port: int, health_port: int, netns: bool, extra: dict) -> tuple[str, dict]:
    """``prepare`` in a forked child: decompressing ~250 MB of lzma would otherwise leave this long-lived
    launcher holding tens of MB it never returns to the OS. The child shares our network namespace."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        code = 0
        try:
            exe, env = prepare(home, grpc_port, health_port, netns, extra)
            payload = json.dumps({"exe": exe, "env": env}).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which exits
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            code = 1
        with os.fdopen(wfd, "wb") as w:
            w.write(payload)
        os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        reply = json.loads(r.read() or b'{"error": "prepare died"}')
    os.waitpid(pid, 0)
    if "error" in reply:
        raise SystemExit(f"launcher: preparing Milvus failed: {reply['error']}")
    return reply["exe"], reply["env"]


# -------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> int:
    home = os.path.abspath(args.home)
    for sub in ("logs", "data", "configs", "run", "tmp"):
        os.makedirs(join(home, sub), exist_ok=True)
    if os.getpid() != os.getpgid(0):
        try:
            os.setsid()  # own session and process group: milvus.sh down can find every process we start
        except OSError:
            pass

    isolation = args.isolation
    listeners: list[tuple[socket.socket, int, str]] = []
    if isolation in ("auto", "netns"):
        public = [
            (listen_loopback(args.port), args.port, "grpc"),
            (listen_loopback(args.health_port), args.health_port, "health"),
        ]
        try:
            kind = enter_private_netns()
            listeners = public
            isolation = "netns"
            log(
                f"private network namespace ({kind}); relaying {LOOPBACK}:{args.port} and {LOOPBACK}:{args.health_port}"
            )
            try:
                log("private " + ", ".join(private_fixed_dirs(home)))
            except OSError as exc:
                log(f"WARNING: no private /run/milvus, /tmp/milvus ({exc}); only one Milvus 2.3 per machine")
        except OSError as exc:
            for sock, _, _ in public:
                sock.close()
            if args.isolation == "netns":
                log(f"cannot create a network namespace: {exc}")
                return 2
            isolation = "none"
            log(
                f"WARNING: cannot create a network namespace ({exc}); Milvus 2.3 will listen on ALL interfaces "
                f"(ports {args.port}, {args.health_port} and its internal ones)"
            )
    extra = dict(DEFAULT_SETTINGS)
    extra.update(_extra(item) for item in os.environ.get("VISEARCH_MILVUS_SETTINGS", "").split())
    extra.update(args.extra)
    exe, env = prepare_in_child(home, args.port, args.health_port, isolation == "netns", extra)

    state = {
        "pid": os.getpid(),
        "port": args.port,
        "health_port": args.health_port,
        "isolation": isolation,
        "uri": f"http://{LOOPBACK}:{args.port}",
        "started": time.time(),
    }

    def write_state() -> None:  # read by milvus.sh (status/down): the ports and PIDs of this instance
        tmp = join(home, "milvus.run.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, join(home, "milvus.run.json"))

    write_state()
    libc = _libc()
    parent = os.getpid()

    def child_setup() -> None:  # in the child, before exec: die with the launcher even if it is SIGKILLed
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    stamp = f"\n===== {datetime.datetime.now().isoformat()} launcher {os.getpid()} starting {exe} run standalone\n"
    out = open(join(home, "logs", "milvus-stdout.log"), "a")
    err = open(join(home, "logs", "milvus-stderr.log"), "a")
    for f in (out, err):
        f.write(stamp)
        f.flush()
    proc = subprocess.Popen(
        [exe, "run", "standalone"],
        cwd=home,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        preexec_fn=child_setup,
    )
    log(f"milvus pid {proc.pid} started (isolation={isolation})")
    state["milvus_pid"] = proc.pid
    write_state()

    stopping = {"at": None}

    def on_signal(signum, _frame) -> None:
        if stopping["at"] is None:
            stopping["at"] = time.monotonic()
            log(f"{signal.Signals(signum).name}: stopping milvus pid {proc.pid}")
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    for sock, port, name in listeners:
        Relay(sock, port, name).start()

    rc = proc.wait()
    for sock, _, _ in listeners:
        sock.close()
    if stopping["at"] is not None:
        log(f"milvus exited with {rc} after {time.monotonic() - stopping['at']:.1f} s")
        return 0
    log(f"milvus exited on its own with {rc}; see {join(home, 'logs')}")
    return rc if rc > 0 else 1


def probe(args: argparse.Namespace) -> int:
    """0 when /healthz says OK and a real request on the API port succeeds; 1 otherwise (reason on stderr)."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{args.health_port}/healthz", timeout=args.timeout) as r:
            body = r.read().decode("utf-8", "replace")
        if "OK" not in body:
            raise RuntimeError(f"healthz: {body.strip()[:200]}")
        with urllib.request.urlopen(f"http://{LOOPBACK}:{args.port}/v1/vector/collections", timeout=args.timeout) as r:
            reply = json.loads(r.read())
        if reply.get("code") != 200:
            raise RuntimeError(f"list collections: {reply}")
        if args.wait_loaded:  # after a restart Milvus reloads the collections that were loaded: wait for that
            for name in reply.get("data") or []:
                url = f"http://{LOOPBACK}:{args.port}/v1/vector/collections/describe?collectionName={urllib.parse.quote(name)}"
                with urllib.request.urlopen(url, timeout=args.timeout) as r:
                    state = (json.loads(r.read()).get("data") or {}).get("load", "")
                if state == "LoadStateLoading":
                    raise RuntimeError(f"collection {name} is still loading")
    except (OSError, ValueError, RuntimeError, http.client.HTTPException) as exc:
        print(f"not ready: {exc}", file=sys.stderr)
        return 1
    return 0


def _extra(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected key.path=value")
    return key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("run", "probe"), nargs="?", default="run")
    parser.add_argument("--home", default=os.environ.get("VISEARCH_MILVUS_HOME", "var/milvus"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("VISEARCH_MILVUS_PORT", "19530")))
    parser.add_argument("--health-port", type=int, default=int(os.environ.get("VISEARCH_MILVUS_HEALTH_PORT", "9091")))
    parser.add_argument(
        "--isolation", choices=("auto", "netns", "none"), default=os.environ.get("VISEARCH_MILVUS_ISOLATION", "auto")
    )
    parser.add_argument(
        "--set",
        dest="extra",
        type=_extra,
        action="append",
        default=[],
        help="extra milvus.yaml setting, e.g. --set queryNode.gracefulTime=0 (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="probe: per-request timeout (s)")
    parser.add_argument(
        "--wait-loaded", action="store_true", help="probe: also require that no collection is still being (re)loaded"
    )
    args = parser.parse_args()
    return probe(args) if args.mode == "probe" else run(args)


if __name__ == "__main__":
    sys.exit(main())
