"""Running the pipeline: the stack, its topics, worker processes, a replay sent and waited for, what it produced.

``Pipeline`` is the one place these steps are written; ``txmon demo``, ``txmon replay``, the end-to-end tests
and the pipeline benchmark all drive it::

    with Pipeline(settings, app_id="txmon-demo-...") as p:   # services not configured are started, topics made
        p.start_workers(1, timeout=60)                        # each joined its consumer group
        result = p.run(plan, rate=None, timeout=300)          # send, wait for replay_end, collect
    # workers stopped (SIGTERM, then SIGKILL), then the services started here; also on Ctrl-C

"Done" is recorded by the workers in Redis (``completion.wait_for_replay_end``), never consumer lag. The lower
steps (``send``, ``wait_replay_end``, ``collect_alerts``, ``follow``) are public for callers that need
another order, e.g. a test that sends a replay twice and waits once.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import redis

from producer.plan import ReplayPlan
from producer.send import Progress, ReplaySummary, TopicSetup, prepare_topics, send_replay
from txmon.core.contracts import Alert, StepStats
from txmon.core.errors import TxmonError
from txmon.core.settings import Settings
from txmon.embedded import Stack, embedded_stack
from txmon.pipeline.completion import (
    AlertCollector,
    published_alerts,
    replay_exists,
    stored_stats,
    wait_for_replay_end,
)
from txmon.pipeline.follow import DemoState, Follower
from txmon.pipeline.worker import WorkerProcess, worker_env

Check = Callable[[], None]  # raises to abort a wait (a worker died, a reader failed)
CHECK_EVERY_S = 0.5  # while sending


class WorkerNotReady(TxmonError, RuntimeError):
    """A worker did not join its consumer group in time."""


@dataclass(frozen=True)
class RunResult:
    """What one replay produced, read once it was done (every partition past replay_end, every step closed)."""

    summary: ReplaySummary  # what was sent
    seconds: float  # from the first send until the replay was done
    published: dict[str, int]  # alerts the workers published, by kind (their own count, in Redis)
    stats: list[StepStats]  # step statistics, by step, as published
    alerts: list[Alert] | None  # the replay's alerts read back from the alert topic (when asked for)
    malformed_alerts: int = 0  # records on the alert topic that were not alerts, skipped


class Pipeline:
    """One stack (embedded services for what ``settings`` leave unset), its topics, and worker processes.

    A context manager: ``close`` stops, in reverse order, the readers, the workers and the services started
    here, also on Ctrl-C. ``settings`` after ``start`` are the ones given, with the actual Kafka and Redis.
    """

    def __init__(self, settings: Settings, app_id: str = "txmon-worker", run_dir: Path | None = None,
                 partitions: int | None = None) -> None:
        """``app_id``: the workers' default consumer group; ``run_dir``: where workers run and log (default: a
        new temp directory named after ``app_id``, made when the first worker starts); ``partitions``: of
        topics created now (default ``settings.topic_partitions``)."""
        self.requested = settings
        self.app_id = app_id
        self._run_dir = run_dir
        self._partitions = partitions
        self.settings = settings
        self.redis: redis.Redis | None = None
        self.stack: Stack | None = None  # what embedded_stack started (or found configured)
        self.topics = TopicSetup(0)
        self.timings: dict[str, float] = {}  # seconds: "services", "topics"
        self.workers: list[WorkerProcess] = []
        self._stack = ExitStack()

    # -- the stack ----------------------------------------------------------------------------------------------------

    def start(self) -> Pipeline:
        """Start (or attach to) Kafka and Redis and create the topics (ServiceError, ProducerError). Once: a
        started pipeline is returned as it is."""
        if self.redis is not None:
            return self
        try:
            t0 = time.perf_counter()
            self.stack = self._stack.enter_context(embedded_stack(self.requested))
            self.timings["services"] = time.perf_counter() - t0
            update: dict[str, object] = {"kafka_bootstrap": self.stack.bootstrap, "redis_url": self.stack.redis_url}
            for name, value in self.stack.worker_settings.items():
                if getattr(self.requested, name) is None:  # what the user set stands
                    update[name] = value
            self.settings = self.requested.model_copy(update=update)
            self.redis = redis.Redis.from_url(self.redis_url)
            self._stack.callback(self.redis.close)
            t0 = time.perf_counter()
            self.topics = prepare_topics(self.bootstrap, self.settings, self._partitions)
            self.timings["topics"] = time.perf_counter() - t0
        except BaseException:
            self.close()
            self.redis = None
            raise
        return self

    @property
    def bootstrap(self) -> str:
        """The Kafka the pipeline uses (before ``start``: the configured one, or "")."""
        return self.settings.kafka_bootstrap or ""

    @property
    def redis_url(self) -> str:
        """The Redis the pipeline uses (before ``start``: the configured one, or "")."""
        return self.settings.redis_url or ""

    @property
    def partitions(self) -> int:
        """Of the transactions topic: a replay is done once this many partitions have passed its replay_end."""
        return self.topics.partitions

    @property
    def client(self) -> redis.Redis:
        if self.redis is None:
            raise RuntimeError("the pipeline is not started")
        return self.redis

    @property
    def run_dir(self) -> Path:
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix=f"{self.app_id}-"))
        return self._run_dir

    # -- workers ------------------------------------------------------------------------------------------------------

    def start_worker(self, app_id: str | None = None, web_port: int | None = None, command: list[str] | None = None,
                     args: Iterable[str] = (), **env: str) -> WorkerProcess:
        """Start a worker in consumer group ``app_id`` (default: the pipeline's), without waiting for it.

        It runs in ``run_dir/worker-N`` and logs to ``run_dir/worker-N.log``; ``web_port`` None picks a free
        port, 0 runs it without its web server; ``command``/``args``: see ``WorkerProcess``; ``env``: more
        environment variables."""
        n = len(self.workers) + 1
        w = WorkerProcess(worker_env(self.settings, app_id or self.app_id, web_port=web_port, extra=env),
                          self.run_dir / f"worker-{n}", log_path=self.run_dir / f"worker-{n}.log", args=args,
                          command=command)
        self.workers.append(w)
        self._stack.callback(_stop_for_sure, w)
        return w.start()

    def start_workers(self, n: int, timeout: float, app_id: str | None = None, web_port: int | None = None,
                      command: list[str] | None = None, args: Iterable[str] = (), **env: str) -> list[WorkerProcess]:
        """``n`` workers in one consumer group, each started once the one before it is ready (one rebalance at a
        time); WorkerNotReady if one is not ready within ``timeout`` s. The rest: see ``start_worker``."""
        started = []
        for _ in range(n):
            w = self.start_worker(app_id, web_port, command, args, **env)
            started.append(w)
            if not self.wait_ready(timeout, [w]):
                raise WorkerNotReady(f"the worker (pid {w.pid}) did not join its consumer group within {timeout:g} s; "
                                     f"its log: {w.log_path}\n{w.log_tail()}")
        return started

    def wait_ready(self, timeout: float, workers: Iterable[WorkerProcess] | None = None,
                   check: Check | None = None) -> bool:
        """Whether ``workers`` (default: all running) joined their group within ``timeout`` s. ``check``
        (default: ``self.check``, every worker still needed is alive) raises to abort."""
        deadline = time.monotonic() + timeout
        for w in list(self.running if workers is None else workers):
            if not w.wait_ready(max(0.0, deadline - time.monotonic()), check or self.check):
                return False
        return True

    @property
    def running(self) -> list[WorkerProcess]:
        """The workers started and not stopped on purpose."""
        return [w for w in self.workers if not w.stopped]

    def check(self) -> None:
        """WorkerDied if a worker that was not stopped on purpose has exited."""
        for w in self.running:
            w.check_alive()

    def stop_workers(self) -> list[int | None]:
        """Stop every worker (SIGTERM, wait, SIGKILL): their exit codes, in the order they were started."""
        return [w.stop() for w in self.workers]

    # -- a replay -----------------------------------------------------------------------------------------------------

    def replay_exists(self, replay_id: str) -> bool:
        """Whether a worker has seen this replay id (its Redis namespace is in use; redis.RedisError)."""
        return replay_exists(self.client, replay_id)

    def _checks(self, check: Check | None) -> Check:
        def both() -> None:
            self.check()
            if check is not None:
                check()

        return both

    def send(self, plan: ReplayPlan, rate: float | None = None, progress: Progress | None = None,
             check: Check | None = None) -> ReplaySummary:
        """Send a planned replay (ProducerError); a dead worker or a raising ``check`` stops it within
        half a second. ``progress(sent, total)``."""
        checks, next_check = self._checks(check), 0.0

        def on_progress(sent: int, total: int) -> None:
            nonlocal next_check
            if progress is not None:
                progress(sent, total)
            if (now := time.monotonic()) >= next_check:
                checks()
                next_check = now + CHECK_EVERY_S

        return send_replay(plan, self.bootstrap, self.settings, rate=rate, progress=on_progress, setup=self.topics)

    def wait_replay_end(self, replay_id: str, timeout: float,
                        progress: Callable[[int, int], None] | None = None, check: Check | None = None) -> float:
        """Block until every partition has passed the replay's replay_end and every step is closed
        (ReplayRunError after ``timeout``): everything is processed and published. Returns the seconds waited.
        ``progress(partitions ended, steps finalised)``."""
        return wait_for_replay_end(self.client, replay_id, self.partitions, timeout, check=self._checks(check),
                                   progress=progress or (lambda ended, steps: None))

    def collect_alerts(self, replay_id: str) -> AlertCollector:
        """A started reader of the replay's alerts, from the alert topic's current end: make it before sending."""
        collector = AlertCollector(self.bootstrap, self.settings.topic_alerts, replay_id)
        self._stack.callback(collector.stop)
        collector.start()
        return collector

    def follow(self, state: DemoState) -> Follower:
        """A started reader of the alert and stats topics from the beginning, into ``state`` (the live view's)."""
        follower = Follower(self.bootstrap, self.settings, state)
        self._stack.callback(follower.stop)
        follower.start()
        return follower

    def run(self, plan: ReplayPlan, rate: float | None = None, timeout: float = 600.0,
            progress: Progress | None = None, waiting: Callable[[int, int], None] | None = None,
            check: Check | None = None, alerts: bool = False, alert_timeout: float = 60.0) -> RunResult:
        """One replay: send ``plan``, wait until every partition has passed its replay_end (``timeout`` s), then
        read its statistics (and, with ``alerts``, all the alerts the workers published for it, from the topic).

        ``progress(sent, total)`` while sending, ``waiting(partitions ended, steps finalised)`` while waiting;
        ``check`` raises to abort either, as a dead worker does.
        """
        collector = self.collect_alerts(plan.replay_id) if alerts else None
        try:
            t0 = time.monotonic()
            summary = self.send(plan, rate, progress, check)
            self.wait_replay_end(plan.replay_id, timeout, waiting, check)
            seconds = time.monotonic() - t0
            published = published_alerts(self.client, plan.replay_id)
            got = collector.wait_for(sum(published.values()), alert_timeout) if collector is not None else None
            return RunResult(summary, seconds, published, stored_stats(self.client, plan.replay_id), got,
                             collector.malformed if collector is not None else 0)
        finally:
            if collector is not None:
                collector.stop()

    # -- the end ------------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the readers, the workers and the services started here, in reverse order of starting."""
        self._stack.close()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop_for_sure(worker: WorkerProcess) -> None:
    """SIGTERM and wait (a clean Faust stop takes about a second), then SIGKILL whatever is left of its session."""
    try:
        worker.stop()
    finally:
        worker.kill()
