"""``txmon top``: live throughput, latency and alerts of running workers, from their /metrics."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from txmon.cli.common import console, err_console, fail, read_settings
from txmon.core.contracts import ALERT_KINDS

if TYPE_CHECKING:  # imported where used: `txmon --help` stays fast
    from stream_app.metrics_read import Figures, Scrape


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:,.0f} ms"


def _name(url: str) -> str:
    """host:port of a metrics URL: what tells workers apart in the table."""
    return url.split("://", 1)[-1].split("/", 1)[0]


def _table(urls: list[str], per_worker: list[tuple[str, Figures]], total: Figures | None, errors: dict[str, str],
           interval: float) -> Table:
    caption = "\n".join(f"{_name(u)}: {reason}" for u, reason in errors.items()) or None
    t = Table(title=f"txmon top — {len(urls)} worker(s), figures over the last {interval:g} s (Ctrl-C to stop)",
              title_justify="left", header_style="bold", caption=caption, caption_justify="left",
              caption_style="red")
    for col in ("worker", "tx/s", "processed", "step", "batch p50/p99", "event→alert p50/p99", "redis p99",
                "step close p99", "alerts arr/conf/retr/fin", "alerts/s", "dead letters", "model"):
        t.add_column(col, justify="left" if col in ("worker", "model") else "right", no_wrap=col == "worker")

    def row(name: str, f: Figures) -> list[str]:
        a = f.alerts
        return [name, f"{f.events_per_s:,.0f}", f"{f.events_total:,.0f}",
                "–" if f.current_step is None else f"{f.current_step:.0f}",
                f"{_ms(f.batch_p50)} / {_ms(f.batch_p99)}", f"{_ms(f.alert_p50)} / {_ms(f.alert_p99)}",
                _ms(f.redis_p99), _ms(f.close_p99),
                " / ".join(f"{a[k]:,.0f}" for k in ALERT_KINDS), f"{f.alerts_per_s:,.1f}",
                f"{f.dead_letters:,.0f}", ", ".join(f.model_versions) or "–"]

    for url, f in per_worker:
        t.add_row(*row(_name(url), f))
    for url in errors:
        t.add_row(_name(url), "[red]down[/]", *[""] * 10)
    if len(per_worker) > 1 and total is not None:  # total is None only without workers
        t.add_row(*row("[bold]all[/]", total), style="bold")
    return t


def top(
    url: Annotated[list[str] | None, typer.Option("--url", help="a worker's metrics URL; repeat for several "
                                                               "[default: http://127.0.0.1:TXMON_WEB_PORT/metrics]")]
    = None,
    interval: Annotated[float, typer.Option(min=0.2, help="seconds between scrapes")] = 2.0,
    iterations: Annotated[int, typer.Option(min=0, help="stop after this many intervals (0: until Ctrl-C)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per interval on stdout, no table")]
    = False,
) -> None:
    """Show live throughput, latency and alerts of running workers, read from their Prometheus /metrics."""
    from stream_app.metrics_read import ScrapeError, figures, scrape

    urls = url or [f"http://127.0.0.1:{read_settings().web_port}/metrics"]
    errors: dict[str, str] = {}

    def scrape_all() -> dict[str, Scrape]:
        out: dict[str, Scrape] = {}
        for u in urls:
            try:
                out[u] = scrape(u, time.monotonic())
                errors.pop(u, None)
            except ScrapeError as e:
                errors[u] = str(e)
        return out

    prev = scrape_all()
    if not prev:
        fail("; ".join(errors.values()) + " (is a worker running? `txmon worker --web-port P` serves /metrics)",
             code=1)
    done = 0
    try:
        from rich.live import Live

        live = None if as_json else Live(console=console, refresh_per_second=2, transient=False)
        if live is not None:
            live.start()
        try:
            while iterations == 0 or done < iterations:
                time.sleep(interval)
                cur = scrape_all()
                both = [u for u in urls if u in prev and u in cur]
                per_worker = [(u, figures(prev[u], cur[u])) for u in both]
                total = figures([prev[u] for u in both], [cur[u] for u in both]) if both else None
                done += 1
                if live is None:  # --json
                    print(json.dumps({"workers": {u: asdict(f) for u, f in per_worker},
                                      "all": asdict(total) if total else None, "errors": errors}), flush=True)
                else:
                    live.update(_table(urls, per_worker, total, errors, interval))
                prev = {**prev, **cur}
        finally:
            if live is not None:
                live.stop()
    except KeyboardInterrupt:
        err_console.print("stopped", highlight=False)
