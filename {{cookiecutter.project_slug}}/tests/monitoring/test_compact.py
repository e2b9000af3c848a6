"""`make compact`: a finished day of JSON lines becomes one Parquet file that reads as the same window,
without losing the lines of kinds monitoring does not read (a challenger's shadow answers).
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import pandas as pd
import pytest

from data_pipelines.example import example_contract
from governance.core.capture import shadow_line
from monitoring import compact
from monitoring.capture import CaptureError, read_window
from tests.support.drift import START, example, fake_scores, write_capture

CONTRACT = example_contract()


@pytest.fixture
def store(tmp_path):
    """400 predictions an hour apart over 17 days, half labelled a day later, one shadow line."""
    frame = example(400, seed=3)
    write_capture(tmp_path, frame, CONTRACT, fake_scores(frame, CONTRACT), step=timedelta(hours=1))
    shadow = shadow_line(
        request_id="req-host-1-0-0",
        row=0,
        timestamp=START.isoformat(),
        model_name="loan_default_model",
        model_version="challenger",
        champion_version="v1",
        label=CONTRACT.target.classes[0] if CONTRACT.target.is_classification else 1.0,
        scores=[0.5] * len(CONTRACT.target.classes),
        latency_ms=1.0,
        champion_latency_ms=1.0,
    )
    with (tmp_path / f"date={START.date()}" / "host-2-0.jsonl").open("wb") as handle:
        handle.write(orjson.dumps(shadow) + b"\n")
    return tmp_path


def test_a_compacted_capture_reads_as_the_same_window(store):
    before = read_window(str(store), contract=CONTRACT)
    days = compact.run(str(store), before=(START + timedelta(days=30)).date(), contract=CONTRACT)
    assert len(days) == 18 and sum(day.files for day in days) == 19
    assert not list(store.glob("date=*/host-*.jsonl"))
    after = read_window(str(store), contract=CONTRACT)
    pd.testing.assert_frame_equal(before, after)


def test_lines_of_other_kinds_are_kept_as_json_lines(store):
    compact.run(str(store), before=(START + timedelta(days=30)).date(), contract=CONTRACT)
    kept = list((store / f"date={START.date()}").glob("other-kinds-*.jsonl"))
    assert len(kept) == 1
    assert [orjson.loads(line)["kind"] for line in kept[0].read_bytes().splitlines()] == ["shadow"]
    assert compact.run(str(store), before=(START + timedelta(days=30)).date(), contract=CONTRACT) == []


def test_days_from_the_cut_off_on_are_left_to_the_writers(store):
    cut = START.date() + timedelta(days=5)
    compact.run(str(store), before=cut, contract=CONTRACT)
    assert sorted(path.parent.name for path in store.glob("date=*/host-1-0.jsonl"))[0] == f"date={cut}"
    assert len(read_window(str(store), contract=CONTRACT)) == 400


def test_a_bad_cut_off_date_is_named(store):
    with pytest.raises(CaptureError, match=r"before: must be a date YYYY-MM-DD \(got 'yesterday'\)"):
        compact.run(str(store), before="yesterday", contract=CONTRACT)
