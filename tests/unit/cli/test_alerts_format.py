"""``txmon alerts tail`` without a broker: the filter, parse and format functions and the missing-broker error."""

from __future__ import annotations

import json
import time
from typing import get_args

import pytest
from typer.testing import CliRunner

from txmon.cli import app
from txmon.cli.alerts import AlertFilter, AlertKind, alert_score, format_alert, parse_alert, parse_since
from txmon.core.contracts import Alert, Influence
from txmon.testing.records import alert as _alert


def test_the_kind_option_offers_exactly_the_alert_kinds() -> None:
    assert {k.value for k in AlertKind} == set(get_args(Alert.model_fields["kind"].annotation))


def test_score_is_the_final_one_once_set() -> None:
    assert alert_score(_alert(1, arrival=0.8)) == 0.8
    assert alert_score(_alert(1, "retracted", arrival=0.8, final=0.3)) == 0.3


@pytest.mark.parametrize(("keep", "expected"), [
    (AlertFilter(), {"r1:1:arrival", "r1:2:final", "r1:3:retracted", "r2:4:arrival"}),
    (AlertFilter(kinds=frozenset({"final", "retracted"})), {"r1:2:final", "r1:3:retracted"}),
    (AlertFilter(min_score=0.75), {"r1:1:arrival", "r1:2:final"}),  # retracted: final 0.3 counts, not arrival 0.9
    (AlertFilter(min_score=0.8), {"r1:1:arrival"}),  # the bound is inclusive
    (AlertFilter(replay_id="r2"), {"r2:4:arrival"}),
    (AlertFilter(kinds=frozenset({"arrival"}), min_score=0.5, replay_id="r1"), {"r1:1:arrival"}),
])
def test_filter(keep: AlertFilter, expected: set[str]) -> None:
    alerts = [_alert(1, arrival=0.8), _alert(2, "final", arrival=0.5, final=0.76),
              _alert(3, "retracted", arrival=0.9, final=0.3), _alert(4, arrival=0.6, replay_id="r2")]
    assert {a.alert_id for a in alerts if keep(a)} == expected


def test_parse_alert_round_trips_and_names_what_is_wrong() -> None:
    a = _alert(7, "final", final=0.9)
    assert parse_alert(a.model_dump_json().encode()) == a
    with pytest.raises(ValueError, match="empty record"):
        parse_alert(None)
    with pytest.raises(ValueError, match="Invalid JSON"):
        parse_alert(b"not json")
    raw = json.loads(a.model_dump_json()) | {"arrival_score": 2}
    with pytest.raises(ValueError, match="arrival_score"):
        parse_alert(json.dumps(raw).encode())


def test_format_alert_is_one_readable_line() -> None:
    a = _alert(123456, "retracted", arrival=0.812, final=0.301, replay_id="20240501-120000-ab12",
               neighbours=[Influence(tx_id=99, weight=-1.234), Influence(tx_id=98, weight=0.5)])
    line = format_alert(a).plain
    assert "\n" not in line
    when = time.strftime("%H:%M:%S", time.localtime(a.processing_time))
    for part in (when, "retracted", "tx     123456", "step 35", "arrival 0.812", "final 0.301", "threshold 0.700",
                 "top 99 (-1.23)", "replay 20240501-120000-ab12"):
        assert part in line, (part, line)
    assert "final   –" in format_alert(_alert(5)).plain and "top –" in format_alert(_alert(5)).plain


def test_tail_without_a_broker_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TXMON_KAFKA_BOOTSTRAP", raising=False)
    result = CliRunner().invoke(app, ["alerts", "tail"])
    assert result.exit_code == 2 and "TXMON_KAFKA_BOOTSTRAP" in result.output


def test_since_reads_iso_times_and_spans_before_now() -> None:
    now = 1_800_000_000.0
    assert parse_since("15m", now) == (now - 900) * 1000
    assert parse_since("1.5h", now) == (now - 5400) * 1000
    assert parse_since("2d", now) == (now - 172_800) * 1000
    assert parse_since("2027-01-15T08:00:00Z") == parse_since("2027-01-15T08:00:00") == 1_800_000_000_000
    assert parse_since("2027-01-15T09:00:00+01:00") == 1_800_000_000_000
    for bad in ("yesterday", "15 minutes", "-5m", ""):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_since(bad, now)

