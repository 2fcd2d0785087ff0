"""Entrypoint of localhost/visearch/milvus: Milvus 2.3.5 standalone in the foreground (this process execs it).

Reuses deploy/milvus/launcher.py (copied next to this file): its ``prepare`` writes
``$MILVUS_HOME/configs/milvus.yaml`` from the ``milvus`` package's template with launcher's DEFAULT_SETTINGS
(time tick, graceful-stop timeouts, session TTL), data under ``$MILVUS_HOME/data`` (embedded etcd, rocksmq,
local storage). Differences from ``milvus.sh up``, because the pod is the isolation: no relay and no private
namespaces (Milvus listens on all interfaces: gRPC 19530, /healthz + /metrics 9091), the binary and its
libraries were extracted at image build time into /opt/milvus/bin (nothing is unpacked into the data
volume), logs go to stdout only, and the server replaces this process (it gets SIGTERM directly).
Environment: MILVUS_HOME (/var/lib/milvus), VISEARCH_MILVUS_PORT (19530), VISEARCH_MILVUS_HEALTH_PORT
(9091), VISEARCH_MILVUS_SETTINGS (space-separated key.path=value overrides, as for launcher.py).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import launcher  # noqa: E402  deploy/milvus/launcher.py
import milvus  # noqa: E402  the milvus==2.3.5 package of /opt/milvus/venv

BIN = "/opt/milvus/bin"
home = os.environ.get("MILVUS_HOME", "/var/lib/milvus")
port = int(os.environ.get("VISEARCH_MILVUS_PORT", "19530"))
health_port = int(os.environ.get("VISEARCH_MILVUS_HEALTH_PORT", "9091"))

settings = dict(launcher.DEFAULT_SETTINGS)
settings.update({"log.stdout": "true", "log.file.rootPath": '""', "etcd.log.path": "stdout"})
settings.update(launcher._extra(item) for item in os.environ.get("VISEARCH_MILVUS_SETTINGS", "").split())

milvus._initialize_data_files = lambda _base: None  # already in BIN (image build)
_, env = launcher.prepare(home, port, health_port, False, settings)
env["LD_LIBRARY_PATH"] = BIN
os.chdir(home)  # the server reads configs/milvus.yaml relative to its working directory
sys.stdout.flush()
os.execve(f"{BIN}/milvus", [f"{BIN}/milvus", "run", "standalone"], env)
