"""Reading the workers' /metrics back: scrape, then figures over the interval between two scrapes
(what ``txmon top`` shows; the Grafana dashboard computes the same with rate() and histogram_quantile())."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from txmon.core.contracts import ALERT_KINDS
from txmon.core.errors import TxmonError

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scrape:
    url: str
    at: float  # time.monotonic() of the scrape
    samples: dict[tuple[str, Labels], float]  # (series name, sorted labels) -> value

    def total(self, name: str, **match: str) -> float:
        """Sum of a series over the label sets that contain ``match``."""
        return sum(v for (n, labels), v in self.samples.items()
                   if n == name and all(dict(labels).get(k) == x for k, x in match.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(labels)[label] for (n, labels) in self.samples if n == name and label in dict(labels)}

    def buckets(self, name: str, **match: str) -> dict[float, float]:
        """Cumulative bucket counts of a histogram (summed over label sets matching ``match``): le -> count."""
        out: dict[float, float] = defaultdict(float)
        for (n, labels), v in self.samples.items():
            d = dict(labels)
            if n == f"{name}_bucket" and all(d.get(k) == x for k, x in match.items()):
                out[float(d["le"])] += v
        return dict(out)


class ScrapeError(TxmonError, RuntimeError):
    pass


def scrape(url: str, at: float, timeout: float = 2.0) -> Scrape:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - operator-given http URL
            text = r.read().decode()
    except (urllib.error.URLError, OSError) as e:
        raise ScrapeError(f"cannot read {url}: {getattr(e, 'reason', e)}") from None
    samples: dict[tuple[str, Labels], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    except ValueError as e:
        raise ScrapeError(f"{url} did not answer in the Prometheus text format: {e}") from None
    return Scrape(url, at, samples)


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The q-quantile of the observations between two scrapes of a histogram, interpolated linearly
    inside the bucket as Prometheus' histogram_quantile does; None without observations."""
    les = sorted(after)
    counts = [after[le] - before.get(le, 0.0) for le in les]
    if not les or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    prev_le, prev_count = 0.0, 0.0
    for le, c in zip(les, counts, strict=True):
        if c >= rank:
            if math.isinf(le):
                return prev_le  # above the highest finite bucket: its bound is all we know
            width = c - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1.0)
        prev_le, prev_count = le, c
    return None


@dataclass
class Figures:
    """What ``txmon top`` shows for one worker or the sum of them, over one interval."""

    events_per_s: float
    batch_p50: float | None
    batch_p99: float | None
    alert_p50: float | None  # event → arrival alert
    alert_p99: float | None
    redis_p99: float | None
    close_p99: float | None
    events_total: float
    alerts: dict[str, float] = field(default_factory=dict)  # kind -> total
    alerts_per_s: float = 0.0
    dead_letters: float = 0.0
    steps_finalised: float = 0.0
    current_step: float | None = None
    model_versions: tuple[str, ...] = ()


def _merge(scrapes: list[Scrape]) -> Scrape:
    samples: dict[tuple[str, Labels], float] = defaultdict(float)
    for s in scrapes:
        for k, v in s.samples.items():
            samples[k] += v
    return Scrape("+".join(s.url for s in scrapes), max(s.at for s in scrapes), dict(samples))


def figures(before: Scrape | list[Scrape], after: Scrape | list[Scrape]) -> Figures:
    """Figures between two scrapes of the same worker, or of the same list of workers (summed)."""
    if isinstance(before, list) and isinstance(after, list):
        current = [s.total("txmon_current_step") for s in after if ("txmon_current_step", ()) in s.samples]
        out = figures(_merge(before), _merge(after))
        out.current_step = max(current) if current else None
        return out
    if isinstance(before, list) or isinstance(after, list):
        raise TypeError("figures() takes two scrapes or two lists of scrapes")
    dt = max(after.at - before.at, 1e-9)
    events = after.total("txmon_events_processed_total")
    alerts: dict[str, float] = {k: after.total("txmon_alerts_total", kind=k) for k in ALERT_KINDS}

    def q(name: str, p: float, **match: str) -> float | None:
        return quantile(p, before.buckets(name, **match), after.buckets(name, **match))

    step = after.samples.get(("txmon_current_step", ()))
    return Figures(
        events_per_s=(events - before.total("txmon_events_processed_total")) / dt,
        batch_p50=q("txmon_batch_seconds", 0.5), batch_p99=q("txmon_batch_seconds", 0.99),
        alert_p50=q("txmon_event_to_alert_seconds", 0.5, kind="arrival"),
        alert_p99=q("txmon_event_to_alert_seconds", 0.99, kind="arrival"),
        redis_p99=q("txmon_redis_roundtrip_seconds", 0.99), close_p99=q("txmon_step_close_seconds", 0.99),
        events_total=events, alerts=alerts,
        alerts_per_s=(sum(alerts.values()) - before.total("txmon_alerts_total")) / dt,
        dead_letters=after.total("txmon_dead_letters_total"),
        steps_finalised=after.total("txmon_steps_finalised_total"),
        current_step=step,
        model_versions=tuple(sorted(v for v in after.label_values("txmon_model_info", "model_version")
                                    if after.total("txmon_model_info", model_version=v) > 0)),
    )
