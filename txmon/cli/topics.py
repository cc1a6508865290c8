"""``txmon topics create``: make txmon's four Kafka topics exist before anything uses them.

Why a command of its own: a deployment may start its producers before its workers, and a producer's first send
auto-creates a missing topic with the broker's default partition count (``txmon worker`` creates the four
itself when missing). Creating all four up front, with
TXMON_TOPIC_PARTITIONS partitions, fixes how many workers can share the load. The work itself is
``producer.kafka_io.ensure_topics``; this only reads the settings and reports.
"""

from __future__ import annotations

from typing import Annotated

import typer

from txmon.cli.common import console, err_console, fail, read_settings
from txmon.cli.produce import NO_BROKER

topics_app = typer.Typer(help="txmon's Kafka topics (transactions, alerts, stats, dead letters).",
                         no_args_is_help=True)


@topics_app.command()
def create(
    partitions: Annotated[int | None, typer.Option(min=1, help="partitions of topics created now (default: "
                                                   "TXMON_TOPIC_PARTITIONS)")] = None,
) -> None:
    """Create the transactions, alerts, stats and dead-letter topics when missing; existing ones are kept.

    The broker is TXMON_KAFKA_BOOTSTRAP; topic names come from TXMON_TOPIC_*. Safe to run again.
    """
    from producer.kafka_io import ProducerError, ensure_topics

    s = read_settings()
    if not s.kafka_bootstrap:
        fail(NO_BROKER)
    wanted = partitions or s.topic_partitions
    names = s.topics
    try:
        counts = ensure_topics(s.kafka_bootstrap, names, wanted)
    except ProducerError as e:
        fail(str(e))
    for name in names:
        console.print(f"{name}: {counts[name]} partitions", highlight=False)
    have = counts[s.topic_transactions]
    if have != wanted:
        # Not an error: replays send markers to the partitions that exist. But it caps the useful workers.
        err_console.print(f"[yellow]warning:[/] {s.topic_transactions} already existed with {have} partitions "
                          f"(not {wanted}) and was left as it is: at most {have} workers share the load",
                          highlight=False)
