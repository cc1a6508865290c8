"""The ``txmon`` command: one typer app, one module per command group."""

from __future__ import annotations

import typer

from txmon import __version__
from txmon.cli.alerts import alerts_app
from txmon.cli.analyze import analyze
from txmon.cli.data import data_app
from txmon.cli.demo import demo
from txmon.cli.models import models_app
from txmon.cli.produce import produce
from txmon.cli.replay import replay
from txmon.cli.schema import schema
from txmon.cli.top import top
from txmon.cli.topics import topics_app
from txmon.cli.train import evaluate, train
from txmon.cli.worker import worker

app = typer.Typer(
    name="txmon",
    help="Streaming transaction monitor for Bitcoin anti-money-laundering (Elliptic data).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(topics_app, name="topics")
app.add_typer(alerts_app, name="alerts")
app.command()(demo)
app.command()(analyze)
app.command()(train)
app.command()(evaluate)
app.command()(produce)
app.command()(replay)
app.command()(worker)
app.command()(top)
app.command()(schema)


@app.command()
def version() -> None:
    """Print txmon's version."""
    typer.echo(__version__)


def main() -> None:
    app()
