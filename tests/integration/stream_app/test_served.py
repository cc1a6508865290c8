"""The worker's processor as ``stream_app.app`` builds it, against a real redis-server."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from stream_app.app import _Served
from stream_app.processor import Processor
from txmon.core.settings import Settings

pytestmark = pytest.mark.integration
_freeze = gc.freeze


def test_the_heap_start_up_made_is_frozen_once_when_the_processor_is_built(
        redis_url: str, proc: Processor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = _Served(Settings(redis_url=redis_url, kafka_bootstrap=None, model_dir=tmp_path), proc.model)
    freezes = []
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(gc.get_freeze_count()) or _freeze())
    gc.unfreeze()  # whatever an earlier test froze: this one counts its own
    try:
        built = served()
        assert gc.get_freeze_count() > 0  # full collections no longer scan it (stream_app.app._Served)
        assert served() is built and freezes == [0]  # built, and frozen, once
    finally:
        gc.unfreeze()
        served.fit_pool.close(wait=True)
