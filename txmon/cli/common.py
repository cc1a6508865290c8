"""Small helpers shared by the command modules: console, errors, progress."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from txmon.core.progress import PhaseProgress
from txmon.core.settings import Settings

if TYPE_CHECKING:  # imported where used: `txmon --help` stays fast
    from model_store.registry import ModelStore
    from replay.data.dataset import EllipticDataset

# Piped output (CI logs, files) gets a wide console instead of rich's 80 columns, so tables
# are not truncated.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)


def quiet_kafka_logs() -> None:
    """Our own messages say what went wrong; the Kafka clients' log lines would only repeat it noisily."""
    for name in ("kafka", "aiokafka", "producer"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def fail(message: str, code: int = 2) -> NoReturn:
    """A user-facing error: one clear line on stderr, no traceback."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def phase_progress() -> Iterator[PhaseProgress]:
    """A progress bar fed by ``(phase, done, total)`` callbacks."""
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err_console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def read_settings(**overrides: object) -> Settings:
    """The command's settings: TXMON_* variables with ``overrides`` (its options) over them, read once where the
    command starts and passed down. A malformed variable is a clean error naming it."""
    try:
        return Settings.model_validate(overrides)  # runs Settings' __init__: TXMON_* variables are read
    except ValidationError as e:
        problems = "; ".join(f"TXMON_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                             for err in e.errors())
        fail(f"invalid setting: {problems}")


def open_store(store: Path | None) -> ModelStore:
    """The model store at ``store``, default TXMON_MODEL_DIR."""
    from model_store.registry import ModelStore

    return ModelStore(store if store is not None else read_settings().model_dir)


def load_dataset(data_dir: Path, settings: Settings | None = None) -> EllipticDataset:
    """Load a data set or exit with the loader's message (file:line and what is wrong); its binary copy is kept
    under the command's TXMON_CACHE_DIR."""
    from replay.data.elliptic import DatasetError, load_elliptic

    cache_dir = (settings or read_settings()).cache_dir / "datasets"
    try:
        with err_console.status(f"loading {data_dir} ..."):
            return load_elliptic(data_dir, cache_dir=cache_dir)
    except DatasetError as e:
        fail(str(e))
