"""``txmon schema``: the JSON Schema of a record on Kafka, for consumers in other languages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from txmon.cli.common import err_console, fail
from txmon.core.schemas import RecordName, json_schema


def schema(
    record: Annotated[RecordName, typer.Argument(help="alert, stats, dead-letter, transaction (the union of "
                                                 "the JSON kinds on the transactions topic) or transaction-batch "
                                                 "(the header of a binary tx_batch record)")],
    out: Annotated[Path | None, typer.Option("--out", help="write the schema to this file instead of stdout")]
    = None,
) -> None:
    """Print the JSON Schema (draft 2020-12) of a record txmon puts on Kafka.

    Generated from the pydantic models the producer and the worker use, with $id, title and x-schema-version.

    Field tables, topics and keys: docs/contracts.md.
    """
    text = json.dumps(json_schema(record), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        sys.stdout.buffer.write(text.encode())  # UTF-8 whatever the locale: descriptions hold α, ∝, ≥
        sys.stdout.flush()
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {out}: {e.strerror or e}")
    err_console.print(f"wrote the {record.value} schema to {out}", highlight=False)
