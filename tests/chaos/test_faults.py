"""Faults injected into the running ingest chain; after each one nothing is lost, nothing is stored
twice, the recovery time is measured and the DLQ stays empty.

The chain is all five stages (detection -> embedding -> ocr -> classification -> indexer), each its own
``visearch serve`` process, over a private Kafka broker, Milvus standalone and Triton (see
:mod:`tests.chaos.harness`), fed with Fashion-MNIST thumbnails. Each scenario publishes its own tenant's
events, waits until the stage it hits is mid-stream (some batches committed, more to come), injects the
fault, and then checks:

- exactly the published image ids are stored (count == distinct ids == published, in the image and the
  joint collection), the DLQ topics did not grow, every service is still running;
- a sample of stored rows equals an in-process computation of the same stages (vectors by cosine,
  catalogue fields, perceptual hash, OCR text, region count);
- and records: progress at the fault, outage, resume time (fault cleared -> the hit stage commits
  again), recovery time (fault cleared -> everything indexed and consumer lag 0), events processed
  twice (redelivered after the fault: harmless upserts), into ``reports/chaos.json``.

Size: ``VISEARCH_CHAOS_SCALE`` (default 0.3, the CI run inside ``make test``; ``make chaos`` uses 1 and
adds the tests marked ``full``: one kill -9 stream per stage, Milvus paused past its session TTL).
Events per scenario ``80 x scale`` (at least 16); outages grow with the scale too; Triton is stopped for
``VISEARCH_CHAOS_TRITON_DOWN_S`` (default 30 s at scale >= 1, else 10 s).
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from tests.chaos.harness import (
    ALL_STAGES,
    DelayProxy,
    IsolatedStack,
    KafkaProbe,
    Reference,
    Services,
    StoreProbe,
    content_mismatches,
    env_float,
    pause_process,
    publish,
    run_dir,
    scaled,
    wait_until,
    write_report,
    write_triton_repository,
)
from visearch.embedded import item_to_event
from visearch.offline.datasets import fashion_mnist
from visearch.shared.kafka import create_topics

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.kafka,
    pytest.mark.milvus,
    pytest.mark.triton,
    pytest.mark.models,
    pytest.mark.slow,
]

SCALE = env_float("VISEARCH_CHAOS_SCALE", 0.3)
EVENTS = scaled(80, SCALE, 16)  # events per scenario
BATCH = 8  # VISEARCH_KAFKA_MAX_POLL_RECORDS: several batches per stream
BROKER_DOWN_S = max(3.0, 15 * SCALE)  # broker stopped this long (plus its stop/start time)
MILVUS_DOWN_S = max(3.0, 15 * SCALE)
TRITON_DOWN_S = env_float("VISEARCH_CHAOS_TRITON_DOWN_S", 30.0 if SCALE >= 1 else 10.0)
SLOW_S = max(8.0, 30 * SCALE)  # how long Milvus is slowed by the proxy
PAUSE_S = 6.0  # SIGSTOP of Milvus: below its 10 s session TTL
PAST_TTL_S = 15.0  # ... and past it (make chaos only)
SLOW_DELAY_S = 0.3  # added per chunk, each way, by the delay proxy
SAMPLE = 3  # rows compared with the in-process computation
WAIT_S = 600  # upper bound of any wait (a hang fails, it does not eat CI)

REPORT: dict = {"scale": SCALE, "events_per_scenario": EVENTS, "batch": BATCH, "scenarios": {}}
_offsets = iter(range(0, 60_000, 2_000))  # each scenario its own Fashion-MNIST slice


@pytest.fixture(scope="module")
def stack(built_models):
    """Kafka, Milvus standalone and Triton (all models, local flavour) in a private run directory."""
    root = run_dir("chaos")
    stack = IsolatedStack(root, triton_repository=write_triton_repository(root / "triton-repo"))
    try:
        REPORT["startup_s"] = stack.up_all()
        yield stack
    finally:
        stack.close()


class Chain:
    """The running chain of one test module and its probes."""

    def __init__(self, stack: IsolatedStack, log_dir) -> None:
        self.stack = stack
        self.prefix = f"c{uuid.uuid4().hex[:8]}"
        # The indexer reaches Milvus through a delay proxy (0 s delay unless a test slows it).
        self.proxy = DelayProxy(stack.ports["milvus"])
        self.services = Services(
            stack,
            self.prefix,
            ALL_STAGES,
            log_dir,
            triton=False,
            extra_env={"VISEARCH_KAFKA_MAX_POLL_RECORDS": str(BATCH)},
        )
        self.services.add("indexer", {"VISEARCH_MILVUS_URI": f"http://127.0.0.1:{self.proxy.port}"})
        self.kafka = self.services.kafka
        created = create_topics(self.kafka, ALL_STAGES)
        assert set(created.values()) == {"created"}, created
        self.probe = KafkaProbe(self.kafka, ALL_STAGES)
        self.store = StoreProbe(stack.milvus_uri, self.prefix)
        self.on_triton = False

    def use_triton(self) -> float:
        """Restart the four model services with VISEARCH_MODEL_TRITON_URL (SIGTERM: drain and commit).
        Returns the seconds it took."""
        start = time.perf_counter()
        for name in ALL_STAGES[:-1]:
            assert self.services.procs[name].stop() == 0, self.services.logs()
            self.services.add(name, {"VISEARCH_MODEL_TRITON_URL": self.stack.triton_url})
        self.services.start_all(ALL_STAGES[:-1])
        self.on_triton = True
        return time.perf_counter() - start

    def check_alive(self) -> None:
        dead = [n for n, ok in self.services.alive().items() if not ok]
        assert not dead, f"services died: {dead}\n{self.services.logs()}"


@pytest.fixture(scope="module")
def chain(stack, tmp_path_factory):
    """The five stage services (in-process models first) consuming this module's topics."""
    chain = Chain(stack, tmp_path_factory.mktemp("chaos-logs"))
    try:
        REPORT["services_start_s"] = round(chain.services.start_all(), 1)
        yield chain
    finally:
        codes = chain.services.stop_all()
        chain.probe.close()
        chain.store.close()
        chain.proxy.close()
        REPORT["exit_codes"] = codes
        write_report("chaos", REPORT)
        print_table()
    assert set(codes.values()) == {0}, f"exit codes {codes}\n{chain.services.logs()}"


@pytest.fixture(scope="module")
def reference():
    return Reference()


def print_table() -> None:
    rows = REPORT["scenarios"]
    print(f"\nchaos (scale {SCALE}, {EVENTS} events per scenario; reports/chaos.json):")
    print(f"{'scenario':28} {'at fault':>9} {'outage s':>9} {'resume s':>9} {'recovery s':>11} {'twice':>6} {'dlq':>4}")
    for name, r in rows.items():
        print(
            f"{name:28} {r['progress_at_fault']:>4}/{r['events']:<4} {r['outage_s']:>9} {r['resume_s']:>9} "
            f"{r['recovery_s']:>11} {r['processed_twice']:>6} {r['dlq_new']:>4}"
        )


def fashion_events(tenant: str, n: int):
    offset = next(_offsets)
    return [item_to_event(item, tenant) for item in fashion_mnist("train", limit=n, offset=offset)]


class Scenario:
    """One scenario's stream: its tenant and events, and the DLQ / output / offset baselines."""

    def __init__(self, chain: Chain, name: str, n: int = EVENTS) -> None:
        self.chain, self.name, self.n = chain, name, n
        self.tenant = name.replace("[", "-").replace("]", "")
        self.events = fashion_events(self.tenant, n)
        chain.check_alive()
        self.dlq_before, self.out_before = chain.probe.dlq_sizes(), chain.probe.output_sizes()
        self.base = {stage: chain.probe.committed(stage) for stage in ALL_STAGES}
        assert None not in (self.dlq_before, self.out_before, *self.base.values()), "broker not answering"
        self.start = time.perf_counter()
        publish(chain.kafka, self.events)

    def progress(self, stage: str) -> int | None:
        """Events of this stream that ``stage`` has committed (None while the broker is down)."""
        done = self.chain.probe.committed(stage)
        return None if done is None else done - self.base[stage]

    def wait_mid_stream(self, stage: str) -> int:
        """Wait until ``stage`` committed at least one batch of this stream; return its progress.

        Raises:
            AssertionError: it had already finished the stream (too short to test anything).
        """

        def mid():
            self.chain.check_alive()
            done = self.progress(stage)
            return done is not None and done >= BATCH and done

        progress = wait_until(mid, WAIT_S, 0.1, f"{stage} mid-stream")
        assert progress < self.n, (
            f"{stage} finished all {self.n} events before the fault: the stream is too short "
            f"for this machine (raise VISEARCH_CHAOS_SCALE)"
        )
        return int(progress)

    def wait_resumed(self, stage: str, since: int) -> float:
        """Wait until ``stage`` commits past ``since`` (or has done the whole stream); return the time."""
        if since < self.n:
            wait_until(
                lambda: (self.chain.check_alive(), (self.progress(stage) or 0) > since)[1],
                WAIT_S,
                0.2,
                f"{stage} resumed",
            )
        return time.perf_counter()

    def finish(self, reference: Reference) -> dict:
        """Wait until everything is indexed and the lag is 0, check the outcome, return the common figures.

        Raises:
            AssertionError: a lost, extra or duplicated row, a dead letter, a wrong stored row, a dead service.
        """
        chain = self.chain

        def recovered():
            chain.check_alive()
            return chain.store.count(self.tenant) == self.n and chain.probe.total_lag() == 0

        wait_until(recovered, WAIT_S, 0.2, f"all {self.n} indexed and lag 0")
        self.done = time.perf_counter()
        expected = sorted(e.image_id for e in self.events)
        stored = sorted(chain.store.ids(self.tenant))
        assert stored == expected, (
            f"{len(stored)} rows, {len(set(stored))} distinct; missing "
            f"{sorted(set(expected) - set(stored))[:5]}, extra {sorted(set(stored) - set(expected))[:5]}"
        )
        assert sorted(chain.store.ids(self.tenant, "joint")) == expected
        dlq_after, out_after = chain.probe.dlq_sizes(), chain.probe.output_sizes()
        dlq_new = sum(dlq_after.values()) - sum(self.dlq_before.values())
        assert dlq_new == 0, f"{dlq_new} dead letters after {self.name}: {dlq_after}"
        produced = sum(out_after.values()) - sum(self.out_before.values())
        twice = produced - self.n * len(out_after)
        assert twice >= 0, f"stage outputs lost events: {produced} produced for {self.n} x {len(out_after)}"
        sample = [self.events[0], self.events[len(self.events) // 2], self.events[-1]][:SAMPLE]
        problems = content_mismatches(chain.store.store, self.tenant, reference.rows(sample, ALL_STAGES))
        assert not problems, problems
        return {
            "events": self.n,
            "processed_twice": int(twice),
            "dlq_new": int(dlq_new),
            "total_s": round(self.done - self.start, 1),
            "models": "triton" if chain.on_triton else "onnxruntime",
        }

    def record(self, figures: dict) -> dict:
        """Add ``figures`` to reports/chaos.json (rewritten) and print them."""
        figures = {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}
        REPORT["scenarios"][self.name] = figures
        write_report("chaos", REPORT)
        print(f"{self.name}: {figures}")
        return figures


def run_scenario(chain: Chain, reference: Reference, name: str, affected: str, inject) -> dict:
    """Publish EVENTS events for tenant ``name``, call ``inject()`` once stage ``affected`` is mid-stream,
    wait for full recovery, check the outcome and record the figures.

    ``inject`` returns a dict with ``t_fault`` and ``t_clear`` (perf_counter) and any other figures.
    """
    scenario = Scenario(chain, name)
    progress = scenario.wait_mid_stream(affected)
    fault = inject()
    t_clear = fault.pop("t_clear")
    outage = t_clear - fault.pop("t_fault")
    at_clear = wait_until(lambda: scenario.progress(affected), WAIT_S, 0.2, "broker answering")
    resumed = scenario.wait_resumed(affected, at_clear)
    common = scenario.finish(reference)
    return scenario.record(
        {
            **common,
            "affected_stage": affected,
            "progress_at_fault": progress,
            "outage_s": outage,
            "resume_s": resumed - t_clear,
            "recovery_s": scenario.done - t_clear,
            **fault,
        }
    )


def restart(chain: Chain, component: str, down_s: float):
    """An ``inject`` for :func:`run_scenario`: stop ``component`` with its script, keep it down ``down_s``
    seconds, start it again; records the scripts' stop and start times."""

    def inject():
        t_fault = time.perf_counter()
        down = chain.stack.down(component)
        time.sleep(down_s)
        up = chain.stack.up(component)
        return {"t_fault": t_fault, "t_clear": time.perf_counter(), "down_s": down, "up_s": up}

    return inject


def test_kill_9_every_stage_in_one_stream(chain, reference):
    """SIGKILL each of the five stage processes in turn, each once it is mid-stream (no drain, no
    commit), and start it again at once in the background, as a supervisor would: the uncommitted
    batches are redelivered; every image is stored exactly once. Per stage: progress at the kill,
    boot time, and resume time (restart issued -> the stage commits again)."""
    scenario = Scenario(chain, "kill9[every-stage]", scaled(100, SCALE, 32))
    kills, boots, threads = {}, {}, []
    for stage in ALL_STAGES:
        progress = scenario.wait_mid_stream(stage)
        proc = chain.services.procs[stage]
        t_kill = time.perf_counter()
        proc.kill9()
        proc.start(wait=False)  # at once, as a supervisor would; it boots while the next stage is hit

        def booted(proc=proc, stage=stage, t0=t_kill):
            proc.wait_serving()
            boots[stage] = time.perf_counter() - t0

        kills[stage] = (t_kill, progress)
        thread = threading.Thread(target=booted, daemon=True)
        thread.start()
        threads.append(thread)
    per_stage = {}
    for (stage, (t_kill, progress)), thread in zip(kills.items(), threads):
        resumed = scenario.wait_resumed(stage, progress)
        thread.join(WAIT_S)
        per_stage[stage] = {
            "progress_at_kill": progress,
            "boot_s": round(boots[stage], 1),
            "resume_s": round(resumed - t_kill, 1),
        }
    first_kill = min(t for t, _ in kills.values())
    last_kill = max(t for t, _ in kills.values())
    common = scenario.finish(reference)
    scenario.record(
        {
            **common,
            "affected_stage": "all",
            "progress_at_fault": min(p for _, p in kills.values()),
            "outage_s": last_kill - first_kill,
            "resume_s": max(s["resume_s"] for s in per_stage.values()),
            "recovery_s": scenario.done - last_kill,
            "stages": per_stage,
        }
    )


@pytest.mark.full  # `make chaos`: one stream per stage; `make test` kills every stage in one stream
@pytest.mark.parametrize("stage", ALL_STAGES)
def test_kill_9_stage_mid_stream(chain, reference, stage):
    """SIGKILL one stage's process mid-stream (no drain, no commit) and start it again, as a supervisor
    would: its uncommitted batch is redelivered; every image is stored exactly once."""

    def inject():
        t_fault = time.perf_counter()
        chain.services.procs[stage].kill9()
        boot = chain.services.restart(stage)
        return {"t_fault": t_fault, "t_clear": t_fault, "boot_s": boot}

    run_scenario(chain, reference, f"kill9[{stage}]", stage, inject)


@pytest.mark.parametrize("mode", ["latency", "pause"])
def test_slow_milvus(chain, reference, mode):
    """A slow dependency: Milvus answers the indexer late (``latency``: a proxy holds every chunk
    SLOW_DELAY_S each way, for SLOW_S) or not at all for a while (``pause``: SIGSTOP/SIGCONT of the Milvus
    server, a process this test started, for PAUSE_S). The indexer slows down or stalls, Kafka buffers,
    nothing is lost, nothing is dead-lettered."""

    def inject():
        before = chain.probe.committed("indexer")
        t_fault = time.perf_counter()
        if mode == "latency":
            chain.proxy.delay_s = SLOW_DELAY_S
            try:
                time.sleep(SLOW_S)
            finally:
                chain.proxy.delay_s = 0.0
        else:
            pause_process(chain.stack.pid("milvus"), PAUSE_S)
        t_clear = time.perf_counter()
        extra = {"delay_per_chunk_s": SLOW_DELAY_S} if mode == "latency" else {}
        return {
            "t_fault": t_fault,
            "t_clear": t_clear,
            "indexed_during_fault": (chain.probe.committed("indexer") or 0) - before,
            **extra,
        }

    run_scenario(chain, reference, f"slow-milvus[{mode}]", "indexer", inject)


def test_milvus_restart(chain, reference):
    """Stop Milvus standalone mid-stream and start it again: the indexer's writes fail, it backs off
    without committing, and indexes everything once Milvus is back."""

    run_scenario(chain, reference, "milvus-restart", "indexer", restart(chain, "milvus", MILVUS_DOWN_S))


@pytest.mark.full  # `make chaos` only
def test_milvus_paused_past_its_session_ttl(chain, reference):
    """SIGSTOP Milvus for longer than its etcd session TTL (10 s in deploy/milvus): Milvus 2.3 exits by
    itself soon after SIGCONT (its sessions expired). The test then starts it again, as a supervisor
    would; the indexer waits it out and loses nothing."""

    def inject():
        pid = chain.stack.pid("milvus")
        t_fault = time.perf_counter()
        pause_process(pid, PAST_TTL_S)
        try:
            wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 60, 0.5, "milvus exit")
            exited = True
        except TimeoutError:
            exited = False
        up = chain.stack.up("milvus")
        return {
            "t_fault": t_fault,
            "t_clear": time.perf_counter(),
            "paused_s": PAST_TTL_S,
            "milvus_exited": exited,
            "up_s": up,
        }

    run_scenario(chain, reference, "milvus-paused-past-ttl", "indexer", inject)


def test_kafka_broker_restart(chain, reference):
    """Stop the broker (SIGTERM) while the chain is busy and start it again: every stage backs off,
    rewinds to its committed offsets and resumes; nothing is lost or dead-lettered."""

    run_scenario(chain, reference, "kafka-broker-restart", "detection", restart(chain, "kafka", BROKER_DOWN_S))


def test_triton_stopped(chain, reference):
    """With every model on Triton, stop Triton for TRITON_DOWN_S mid-stream and start it again: the
    model stages retry with backoff (no dead letters) and catch up."""
    switch = chain.use_triton() if not chain.on_triton else 0.0
    REPORT["switch_to_triton_s"] = round(switch, 1)

    inject = restart(chain, "triton", TRITON_DOWN_S)
    run_scenario(chain, reference, "triton-stopped", "detection", lambda: {**inject(), "stopped_for_s": TRITON_DOWN_S})
