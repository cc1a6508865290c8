"""Reading /metrics back (stream_app.metrics_read) and `txmon top`, against a real HTTP metrics endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from typer.testing import CliRunner

from stream_app.metrics_read import ScrapeError, figures, quantile, scrape
from txmon.cli import app
from txmon.embedded import free_port


def test_quantile_interpolates_inside_buckets_like_prometheus() -> None:
    before = {0.1: 0.0, 0.5: 0.0, 1.0: 0.0, float("inf"): 0.0}
    after = {0.1: 10.0, 0.5: 30.0, 1.0: 40.0, float("inf"): 40.0}  # 10 in (0,0.1], 20 in (0.1,0.5], 10 in (0.5,1]
    assert quantile(0.25, before, after) == pytest.approx(0.1)  # rank 10: the top of the first bucket
    assert quantile(0.5, before, after) == pytest.approx(0.1 + 0.4 * (10 / 20))  # rank 20: half-way in the 2nd
    assert quantile(0.99, before, after) == pytest.approx(0.5 + 0.5 * (39.6 - 30) / 10)
    assert quantile(0.5, after, after) is None  # nothing observed in between
    beyond = {0.1: 0.0, float("inf"): 5.0}
    assert quantile(0.5, {}, beyond) == 0.1  # above the highest finite bucket


@pytest.fixture
def endpoint() -> Iterator[tuple[str, CollectorRegistry]]:
    reg = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    yield f"http://127.0.0.1:{port}/metrics", reg
    server.shutdown()
    thread.join(5)


def _worker_metrics(reg: CollectorRegistry) -> dict:
    """The worker's metrics (names and labels of stream_app.metrics) on a registry of the test's own."""
    return {
        "events": Counter("txmon_events_processed", "", ["model_version"], registry=reg),
        "alerts": Counter("txmon_alerts", "", ["kind", "model_version"], registry=reg),
        "e2a": Histogram("txmon_event_to_alert_seconds", "", ["kind"], buckets=(0.1, 0.5, 1.0), registry=reg),
        "batch": Histogram("txmon_batch_seconds", "", buckets=(0.01, 0.1), registry=reg),
        "step": Gauge("txmon_current_step", "", registry=reg),
        "model": Gauge("txmon_model_info", "", ["model_version"], registry=reg),
        "dlq": Counter("txmon_dead_letters", "", registry=reg),
    }


def test_figures_between_two_scrapes(endpoint: tuple[str, CollectorRegistry]) -> None:
    url, reg = endpoint
    m = _worker_metrics(reg)
    m["events"].labels("gcn-v2").inc(100)
    m["model"].labels("gcn-v2").set(1)
    first = scrape(url, at=10.0)
    m["events"].labels("gcn-v2").inc(500)
    m["alerts"].labels("arrival", "gcn-v2").inc(3)
    m["alerts"].labels("retracted", "gcn-v2").inc(1)
    for x in (0.05, 0.05, 0.3, 0.7):
        m["e2a"].labels("arrival").observe(x)
    m["e2a"].labels("final").observe(30.0)  # another kind: not in the arrival latency
    m["step"].set(17)
    m["dlq"].inc(2)
    f = figures(first, scrape(url, at=12.0))
    assert f.events_per_s == pytest.approx(250.0) and f.events_total == 600
    assert f.alerts == {"arrival": 3, "confirmed": 0, "retracted": 1, "final": 0}
    assert f.alerts_per_s == pytest.approx(2.0)
    assert f.alert_p50 == pytest.approx(0.1) and 0.5 < f.alert_p99 <= 1.0
    assert f.batch_p50 is None  # no batch in the interval
    assert (f.current_step, f.dead_letters, f.model_versions) == (17, 2, ("gcn-v2",))


def test_top_prints_json_figures_per_interval(endpoint: tuple[str, CollectorRegistry]) -> None:
    url, reg = endpoint
    m = _worker_metrics(reg)
    stop = threading.Event()

    def work() -> None:  # a worker processing 10 events every 10 ms
        while not stop.is_set():
            m["events"].labels("gcn-v1").inc(10)
            time.sleep(0.01)

    t = threading.Thread(target=work)
    t.start()
    try:
        res = CliRunner().invoke(app, ["top", "--url", url, "--interval", "0.5", "--iterations", "2", "--json"])
    finally:
        stop.set()
        t.join()
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == 2 and all(line["errors"] == {} for line in lines)
    assert all(0 < line["workers"][url]["events_per_s"] <= 1100 for line in lines)  # ≤ 1000/s plus timer slack


def test_top_without_a_worker_fails_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    res = CliRunner().invoke(app, ["top", "--url", url, "--iterations", "1"])
    assert res.exit_code == 1
    assert f"cannot read {url}" in res.output and "is a worker running" in res.output
    with pytest.raises(ScrapeError):
        scrape(url, 0.0)


def test_top_renders_its_table(endpoint: tuple[str, CollectorRegistry]) -> None:
    url, reg = endpoint
    m = _worker_metrics(reg)
    m["events"].labels("gcn-v7").inc(10)
    m["model"].labels("gcn-v7").set(1)
    m["step"].set(42)
    dead = f"http://127.0.0.1:{free_port()}/metrics"  # a second worker that is down: a row with the reason
    res = CliRunner().invoke(app, ["top", "--url", url, "--url", dead, "--interval", "0.3", "--iterations", "1"])
    assert res.exit_code == 0, res.output
    assert "txmon top — 2 worker(s)" in res.output and "gcn-v7" in res.output and "42" in res.output
    assert f"cannot read {dead}" in " ".join(res.output.split())  # the reason, under the table
