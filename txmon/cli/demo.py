"""``txmon demo``: the main job on the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from replay.elliptic_format import FILES
from txmon.cli.common import console, phase_progress
from txmon.settings import Settings


def demo(
    data: Annotated[Path | None, typer.Option(help="an Elliptic-format data directory; default: synthetic")] = None,
    scale: Annotated[float, typer.Option(help="size of the synthetic data set when --data is not given")] = 0.25,
    full: Annotated[bool, typer.Option("--full", help="use a full-size synthetic data set (scale 1.0)")] = False,
    seed: Annotated[int, typer.Option(help="seed of the synthetic data set")] = 0,
) -> None:
    """Run the main job: prepare a data set (synthetic unless --data) and describe it.

    The streaming pipeline (producer → Kafka → worker → alerts) joins this command as it lands.
    """
    from txmon.cli.data import describe

    if full:
        scale = 1.0
    if data is None:
        data = Settings().data_dir / f"synthetic-scale{scale:g}-seed{seed}"
        if all((data / f).exists() for f in FILES):
            console.print(f"using the synthetic data set in {data}")
        else:
            from replay.synth import synthesize

            console.print(f"generating a synthetic data set (scale {scale:g}, seed {seed}) in {data}")
            with phase_progress() as progress:
                synthesize(data, scale=scale, seed=seed, progress=progress)
    describe(data, as_json=False, per_step=True)
