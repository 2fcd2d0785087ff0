#!/usr/bin/env python3
"""Loopback relay from the host into the cluster's network namespace (deploy/k8s/cluster.sh).

``relay.py --netns visearch-k8s --listen 127.0.0.1:16443 --target 10.245.255.1:6443`` binds the
listening socket in the host namespace first (loopback only), then moves this process into the
cluster's network namespace with setns(2): every socket created afterwards, the upstream connections
included, lives there. Bytes are copied both ways, a thread per direction. No address, route or
iptables rule is added anywhere. Several ``--listen``/``--target`` pairs may be given.
Standard library only (the system python3).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if hasattr(os, "setns"):
            os.setns(fd, CLONE_NEWNET)
            return
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


def pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
        except OSError as e:
            print(f"relay: {target[0]}:{target[1]} unreachable: {e}", file=sys.stderr, flush=True)
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--netns", required=True, help="network namespace name (under /run/netns)")
    ap.add_argument("--listen", action="append", required=True, help="HOST:PORT on the host (loopback)")
    ap.add_argument("--target", action="append", required=True, help="HOST:PORT inside the namespace")
    args = ap.parse_args()
    if len(args.listen) != len(args.target):
        ap.error("give one --target per --listen")
    listeners = []
    for spec in args.listen:
        host, port = hostport(spec)
        if not host.startswith("127."):
            ap.error(f"--listen {spec}: loopback addresses only")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        listeners.append(s)
    setns(f"/run/netns/{args.netns}")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for s, target in zip(listeners, args.target):
        threading.Thread(target=serve, args=(s, hostport(target)), daemon=True).start()
    print(f"relay: {args.listen} -> {args.netns} {args.target}", flush=True)
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
