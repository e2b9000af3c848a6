"""Batch scoring (`make score`): every row is scored by serving's encoder and scorer, or rejected
with the rule it broke; the output does not depend on how the input is cut or which engine runs it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from governance.cli import main
from governance.core.contract import load as load_contract
from governance.core.errors import InputError
from monitoring import batch_score, engine, row_rules
from monitoring.reference import champion, model_path, model_scores
from tests.support.training import example_frame


@pytest.fixture(scope="module")
def scoring(registered_workspace):
    paths, version = registered_workspace
    contract = load_contract(paths.contract)
    frame = example_frame(1_000, seed=7)[contract.feature_names]
    return paths, version, contract, frame


def read(folder, kind):
    return pd.read_parquet(folder / kind).sort_values(["source", "row"]).reset_index(drop=True)


def broken(frame: pd.DataFrame, contract) -> pd.DataFrame:
    """The frame with four rows that break four different contract rules."""
    bad = frame.copy()
    numeric = next(
        feature for feature in contract.numeric if not feature.nullable and feature.min is not None
    )
    category = contract.categorical[0]
    bad[numeric.name] = bad[numeric.name].astype("float64")
    bad.loc[3, numeric.name] = numeric.min - 1
    bad.loc[5, numeric.name] = None
    bad[category.name] = bad[category.name].astype(object)
    bad.loc[8, category.name] = "not-a-category"
    bad.loc[9, numeric.name] = np.inf
    return bad


def test_it_scores_every_row_as_serving_would(scoring, tmp_path):
    paths, version, contract, frame = scoring
    frame.to_parquet(tmp_path / "input.parquet")
    summary = batch_score.run(paths, str(tmp_path / "input.parquet"), str(tmp_path / "out"))
    assert (summary.rows, summary.scored, summary.rejected) == (1_000, 1_000, 0)
    predictions = read(tmp_path / "out", "predictions")
    expected = model_scores(model_path(paths, champion(paths)[0]), frame, contract)
    assert predictions["row"].tolist() == list(range(1_000))
    assert (predictions["model_version"] == version).all()
    if contract.target.is_classification:
        assert predictions["prediction"].tolist() == contract.target.class_values(expected.label)
        for position, key in enumerate(contract.target.class_keys):
            assert np.allclose(
                predictions[f"probability_{key}"], expected.probabilities[:, position], atol=1e-6
            )
    else:  # regression answers a value, as serving does
        assert "prediction" not in predictions
        assert np.allclose(predictions["value"], expected.value, rtol=1e-5)
    assert (tmp_path / "out" / "summary.html").read_text().count("1000 of 1000 rows scored") == 2


def test_rows_that_break_the_contract_go_to_rejects_with_field_rule_and_value(scoring, tmp_path):
    paths, _, contract, frame = scoring
    broken(frame, contract).to_csv(tmp_path / "input.csv", index=False)
    summary = batch_score.run(paths, str(tmp_path / "input.csv"), str(tmp_path / "out"))
    assert (summary.scored, summary.rejected) == (996, 4)
    rejects = read(tmp_path / "out", "rejects")
    assert rejects["row"].tolist() == [3, 5, 8, 9]
    assert rejects["rule"].tolist() == ["min", "nullable", "categories", "finite"]
    assert "(got not-a-category)" in rejects["reason"][2]
    assert rejects["reason"][0].startswith(f"{rejects['field'][0]}: must be >= ")
    scored = read(tmp_path / "out", "predictions")["row"]
    assert sorted([*scored, *rejects["row"]]) == list(range(1_000))  # none dropped, none twice


def test_parquet_and_csv_inputs_give_the_same_predictions_and_rejects(scoring, tmp_path):
    """Parquet's text columns are read as dictionaries, CSV's as plain text: the files must not differ."""
    paths, _, contract, frame = scoring
    bad = broken(frame, contract)
    bad.loc[11, contract.categorical[-1].name] = None  # a missing category (rejected or scored as "")
    bad.to_csv(tmp_path / "input.csv", index=False)
    bad.to_parquet(tmp_path / "input.parquet", index=False, row_group_size=400)
    batch_score.run(paths, str(tmp_path / "input.csv"), str(tmp_path / "csv"), batch_rows=128)
    batch_score.run(paths, str(tmp_path / "input.parquet"), str(tmp_path / "parquet"), batch_rows=128)
    for kind in ("predictions", "rejects"):
        from_csv, from_parquet = read(tmp_path / "csv", kind), read(tmp_path / "parquet", kind)
        assert len(from_parquet) >= 4 if kind == "rejects" else len(from_parquet) > 900
        pd.testing.assert_frame_equal(from_csv.drop(columns="source"), from_parquet.drop(columns="source"))
    schema = pq.read_schema(next((tmp_path / "parquet" / "rejects").iterdir()))
    assert schema.field(contract.categorical[0].name).type == pa.string()  # text, not the dictionary read


def test_a_local_dask_cluster_writes_the_same_files_as_embedded_scoring(scoring, tmp_path):
    paths, _, contract, frame = scoring
    broken(frame, contract).to_parquet(tmp_path / "input.parquet", index=False, row_group_size=300)
    engines = {"embedded": engine.Engine("embedded"), "dask": engine.Engine("dask-local", workers=2)}
    runs = {
        name: batch_score.run(paths, str(tmp_path / "input.parquet"), str(tmp_path / name), engine=chosen)
        for name, chosen in engines.items()
    }
    assert runs["dask"].pieces == 4 and runs["dask"].rejected == 4
    for kind in ("predictions", "rejects"):
        parts = sorted(path.name for path in (tmp_path / "embedded" / kind).iterdir())
        assert parts == sorted(path.name for path in (tmp_path / "dask" / kind).iterdir())
        for part in parts:
            assert pq.read_table(tmp_path / "embedded" / kind / part).equals(
                pq.read_table(tmp_path / "dask" / kind / part), check_metadata=True
            ), f"{kind}/{part} differs between the engines"


def test_the_output_does_not_depend_on_how_the_input_is_cut(scoring, tmp_path):
    paths, _, _, frame = scoring
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "one.parquet")
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), folder / "a.parquet", row_group_size=150
    )
    whole = batch_score.run(paths, str(tmp_path / "one.parquet"), str(tmp_path / "whole"), batch_rows=1_000)
    cut = batch_score.run(paths, str(folder), str(tmp_path / "cut"), batch_rows=64)
    assert (whole.pieces, cut.pieces) == (1, 7)
    one, many = read(tmp_path / "whole", "predictions"), read(tmp_path / "cut", "predictions")
    pd.testing.assert_frame_equal(one.drop(columns="source"), many.drop(columns="source"))


def test_a_missing_contract_column_stops_the_run_naming_it(scoring, tmp_path):
    paths, _, contract, frame = scoring
    dropped = contract.feature_names[1]
    frame.drop(columns=dropped).to_parquet(tmp_path / "input.parquet")
    with pytest.raises(row_rules.MissingColumns, match=f"'{dropped}'"):
        batch_score.run(paths, str(tmp_path / "input.parquet"), str(tmp_path / "out"))


def test_it_refuses_to_mix_its_output_with_an_earlier_runs(scoring, tmp_path):
    paths, _, _, frame = scoring
    frame.head(10).to_parquet(tmp_path / "input.parquet")
    batch_score.run(paths, str(tmp_path / "input.parquet"), str(tmp_path / "out"))
    with pytest.raises(batch_score.ScoreInputError, match=r"OUT: .*FORCE=1"):
        batch_score.run(paths, str(tmp_path / "input.parquet"), str(tmp_path / "out"))
    again = batch_score.run(paths, str(tmp_path / "input.parquet"), str(tmp_path / "out"), overwrite=True)
    assert again.scored == 10


def test_a_missing_input_is_named(scoring, tmp_path):
    paths = scoring[0]
    with pytest.raises(batch_score.ScoreInputError, match=r"DATA: .*nothing-here\.parquet does not exist"):
        batch_score.run(paths, str(tmp_path / "nothing-here.parquet"), str(tmp_path / "out"))


def test_a_process_loads_a_model_once_however_many_pieces_it_scores(scoring):
    paths = scoring[0]
    content, _ = batch_score.resolve_model(paths, None)
    first, loads = batch_score.scorer_for("digest-of-this-test", content)
    again, loads_after = batch_score.scorer_for("digest-of-this-test", content)
    assert again is first and loads_after == loads


@pytest.mark.parametrize(
    ("settings", "chosen"),
    [
        ({}, engine.Engine("embedded")),
        ({"ENGINE": "dask-local"}, engine.Engine("dask-local")),
        ({"DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.5:8786"}, engine.Engine("dask", "tcp://10.0.0.5:8786")),
        ({"ENGINE": "embedded", "DASK_SCHEDULER_ADDRESS": "tcp://h:8786"}, engine.Engine("embedded")),
    ],
)
def test_the_engine_comes_from_engine_and_the_scheduler_address(monkeypatch, settings, chosen):
    for name in ("ENGINE", "DASK_SCHEDULER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert engine.choose() == chosen


@pytest.mark.parametrize(
    ("name", "address", "message"),
    [
        ("spark", None, "ENGINE: must be one of embedded, dask-local, dask .got 'spark'."),
        ("dask", None, "DASK_SCHEDULER_ADDRESS: must be set"),
        (None, "scheduler:8786", "DASK_SCHEDULER_ADDRESS: must be a scheduler URL .*'scheduler:8786'"),
    ],
)
def test_a_bad_engine_setting_is_refused_naming_the_variable(monkeypatch, name, address, message):
    monkeypatch.delenv("ENGINE", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with pytest.raises(InputError, match=message):
        engine.choose(name, address)


def test_the_command_line_scores_and_says_so_or_exits_2_naming_the_bad_input(scoring, tmp_path, capsys):
    paths, _, _, frame = scoring
    frame.head(50).to_parquet(tmp_path / "input.parquet")
    out = str(tmp_path / "out")
    assert (
        main(
            [
                "--root",
                str(paths.root),
                "--quiet",
                "score",
                "--data",
                str(tmp_path / "input.parquet"),
                "--out",
                out,
            ]
        )
        == 0
    )
    assert "scored 50 of 50 rows (0 rejected)" in capsys.readouterr().out
    assert (
        main(["--root", str(paths.root), "score", "--data", str(tmp_path / "input.parquet"), "--out", out])
        == 2
    )
    assert "OUT: " in capsys.readouterr().err
    assert (
        main(["--root", str(paths.root), "score", "--data", "x.parquet", "--out", out, "--engine", "ray"])
        == 2
    )
    assert "ENGINE: must be one of" in capsys.readouterr().err
