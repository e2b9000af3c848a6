"""Explanations: permutation importance ranks the columns a model relies on first, per contract
column; partial dependence follows the relation the data holds; the champion's ONNX model is
explained on the same rows, with the same shuffles and the same grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from governance.core.contract import Contract, parse_contract
from governance.core.encoding import Scorer
from governance.core.records import Baseline, Explanations, read_json
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION
from ml import explain
from ml.export import convert
from ml.features import model_frame
from ml.train import Params, fit, labels
from tests.support.training import trained_task

ROWS = 1200
COLOURS = ["red", "green", "blue"]


def synthetic(
    task: str, classes: list | None = None, positive: object = None
) -> tuple[Contract, pd.DataFrame]:
    """`signal` decides the target, `colour` shifts it a little, `noise` has nothing to do with it."""
    rng = np.random.default_rng(3)
    signal = rng.uniform(0, 10, ROWS)
    noise = rng.uniform(0, 10, ROWS)
    colour = rng.choice(COLOURS, ROWS)
    shift = np.select([colour == "red", colour == "green"], [1.5, 0.0], -1.5)
    latent = signal + shift + rng.normal(0, 0.5, ROWS)
    target: dict = {"name": "y", "task": task}
    if task == REGRESSION:
        y = 3 * latent
        target["dtype"] = "float64"
    elif task == BINARY:
        low, high = classes or [0, 1]
        y = np.where(latent > 5, high, low)
        target.update(dtype="int64" if isinstance(low, int) else "string", classes=[low, high])
        target["positive_class"] = high if positive is None else positive
    else:
        y = np.array(["low", "mid", "high"])[np.digitize(latent, [3.5, 6.5])]
        target.update(dtype="string", classes=["low", "mid", "high"])
    raw = {
        "version": 1,
        "dataset": "synthetic",
        "target": target,
        "features": [
            {"name": "signal", "kind": "numeric", "dtype": "float64", "min": 0, "max": 10, "nullable": False},
            {"name": "noise", "kind": "numeric", "dtype": "float64", "min": 0, "max": 10, "nullable": False},
            {
                "name": "colour",
                "kind": "categorical",
                "dtype": "string",
                "categories": COLOURS,
                "nullable": False,
            },
        ],
    }
    frame = pd.DataFrame({"signal": signal, "noise": noise, "colour": colour, "y": y})
    return parse_contract(raw), frame


def params(task: str) -> Params:
    settings = {"alpha": 1.0} if task == REGRESSION else {"C": 1.0, "max_iter": 500}
    return Params(
        seed=5, test_size=0.25, model_name="m", model_family="linear", estimators={"linear": settings}
    )


def fitted(task: str, **options):
    """(contract, pipeline, test frame, test labels, metric) of a linear model on the synthetic rows."""
    contract, rows = synthetic(task, **options)
    train, test = rows.iloc[:900], rows.iloc[900:]
    pipeline = fit(train, contract, params(task))
    metric = {BINARY: "roc_auc", MULTICLASS: "log_loss", REGRESSION: "rmse"}[task]
    return contract, pipeline, model_frame(test, contract), labels(test, contract), metric


@pytest.mark.parametrize("task", [BINARY, MULTICLASS, REGRESSION])
def test_importance_ranks_the_informative_column_first_and_the_noise_last(task):
    contract, pipeline, frame, y, metric = fitted(task)
    found = explain.explain(pipeline, frame, y, contract, metric, seed=1, version="v1")
    ranking = [item.feature for item in found.candidate.features]
    assert ranking == ["signal", "colour", "noise"]  # one entry per contract column, not per one-hot code
    importance = {item.feature: item.mean for item in found.candidate.features}
    assert importance["signal"] > 10 * abs(importance["noise"])
    assert found.metric == metric and found.rows == len(frame) and found.repeats == explain.REPEATS
    assert found.dependence_rows == min(len(frame), explain.DEPENDENCE_ROWS)


def test_a_lower_is_better_metric_still_gives_a_useful_column_a_positive_importance():
    contract, pipeline, frame, y, _ = fitted(REGRESSION)
    found = explain.explain(pipeline, frame, y, contract, "rmse", seed=1, version="v1")
    assert found.candidate.features[0].feature == "signal" and found.candidate.features[0].mean > 1.0
    assert found.candidate.score is not None and found.candidate.score > 0  # the rmse itself, not negated


@pytest.mark.parametrize(
    ("task", "options", "rising"),
    [
        (REGRESSION, {}, True),
        (BINARY, {}, True),
        # The positive class is the first one: its probability falls as `signal` rises.
        (BINARY, {"classes": ["yes", "no"], "positive": "yes"}, False),
    ],
)
def test_partial_dependence_follows_a_monotone_relation(task, options, rising):
    contract, pipeline, frame, y, metric = fitted(task, **options)
    found = explain.explain(pipeline, frame, y, contract, metric, seed=1, version="v1")
    curve = next(item for item in found.dependence if item.feature == "signal")
    assert curve.kind == "numeric" and len(curve.grid) == explain.GRID_POINTS
    assert list(curve.grid) == sorted(curve.grid)
    steps = np.diff(curve.candidate[0])
    assert (steps > 0).all() if rising else (steps < 0).all()
    if task == BINARY:
        assert curve.outputs == (f"P({options.get('positive', 1)})",)


def test_multiclass_dependence_has_one_curve_per_class_and_sums_to_one():
    contract, pipeline, frame, y, metric = fitted(MULTICLASS)
    found = explain.explain(pipeline, frame, y, contract, metric, seed=1, version="v1")
    curve = next(item for item in found.dependence if item.feature == "signal")
    assert curve.outputs == ("P(low)", "P(mid)", "P(high)")
    assert np.allclose(np.sum(curve.candidate, axis=0), 1.0, atol=1e-5)
    assert curve.candidate[0][0] > curve.candidate[0][-1] and curve.candidate[2][0] < curve.candidate[2][-1]


def test_a_categorical_feature_sweeps_its_contract_categories():
    contract, pipeline, frame, y, metric = fitted(BINARY)
    found = explain.explain(pipeline, frame, y, contract, metric, seed=1, version="v1")
    curve = next(item for item in found.dependence if item.feature == "colour")
    assert curve.kind == "categorical" and curve.grid == tuple(COLOURS)
    red, green, blue = curve.candidate[0]
    assert red > green > blue  # the shift the data was built with


@pytest.fixture
def champion_file(tmp_path, policy):
    """The same model exported to ONNX, standing in as the champion the regression gate re-scored."""

    def write(task: str) -> tuple:
        contract, pipeline, frame, y, metric = fitted(task)
        path = tmp_path / f"{task}.onnx"
        path.write_bytes(convert(pipeline, contract, policy.onnx.opset, "m").SerializeToString())
        return contract, pipeline, frame, y, metric, path

    return write


@pytest.mark.parametrize("task", [BINARY, MULTICLASS, REGRESSION])
def test_the_champion_is_explained_through_onnx_on_the_same_rows_shuffles_and_grid(champion_file, task):
    contract, pipeline, frame, y, metric, path = champion_file(task)
    baseline = Baseline(version="champ-1", value=0.9, basis="re-scored on this candidate's test split")
    found = explain.explain(pipeline, frame, y, contract, metric, 1, "v1", baseline, path)
    assert found.champion is not None and found.champion.version == "champ-1" and found.champion_note is None
    mine = {item.feature: item.mean for item in found.candidate.features}
    theirs = {item.feature: item.mean for item in found.champion.features}
    for name in mine:  # the same model, the same shuffles: the same importances up to float32 rounding
        assert theirs[name] == pytest.approx(mine[name], abs=1e-3)
    for curve in found.dependence:
        assert curve.champion is not None
        assert np.allclose(curve.champion, curve.candidate, atol=1e-3)
    assert [row[3] for row in found.comparison()] == ["same"] * 3


def test_a_champion_not_rescored_on_these_rows_is_not_explained_and_the_reason_is_kept(champion_file):
    contract, pipeline, frame, y, metric, path = champion_file(BINARY)
    stale = Baseline(
        version="champ-1", value=0.9, basis="registered metric on its own test split", comparable=False
    )
    found = explain.explain(pipeline, frame, y, contract, metric, 1, "v1", stale, path)
    assert found.champion is None and all(curve.champion is None for curve in found.dependence)
    assert "champ-1" in found.champion_note and "its own test split" in found.champion_note
    alone = explain.explain(pipeline, frame, y, contract, metric, 1, "v1")
    assert alone.champion is None and "No champion in production" in alone.champion_note


def test_the_explanations_are_the_same_on_every_run():
    contract, pipeline, frame, y, metric = fitted(BINARY)
    first = explain.explain(pipeline, frame, y, contract, metric, seed=1, version="v1")
    again = explain.explain(pipeline, frame, y, contract, metric, seed=1, version="v1")
    assert first == again


def test_our_brute_force_sweep_agrees_with_scikit_learns_partial_dependence():
    """The champion's curve is computed by hand; on the candidate's own model it must match sklearn's."""
    model = trained_task(BINARY, "random_forest")
    contract, frame = model.contract, model.frame
    name = contract.feature_names[0]
    values = explain.grid(frame, contract, name)
    by_sklearn = explain.candidate_dependence(model.pipeline, frame, contract, name, values)
    onnx_model = explain.OnnxModel(Scorer(model.content), contract)
    by_hand = explain.champion_dependence(onnx_model, frame, contract, name, values)
    assert np.allclose(by_sklearn, by_hand, atol=5e-3)


def test_training_writes_the_explanations_beside_the_model(trained_workspace, example_contract):
    root, version = trained_workspace
    found = read_json(Explanations, root / "artifacts" / "models" / version / "explanations.json")
    assert found.version == version and found.champion is None
    assert len(found.dependence) == explain.TOP_FEATURES
    assert sorted(item.feature for item in found.candidate.features) == sorted(example_contract.feature_names)


def test_partial_dependence_of_many_rows_averages_one_seeded_sample_for_both_models(
    champion_file, monkeypatch
):
    contract, pipeline, frame, y, metric, path = champion_file(BINARY)
    monkeypatch.setattr(explain, "DEPENDENCE_ROWS", 100)
    baseline = Baseline(version="champ-1", value=0.9, basis="re-scored on this candidate's test split")
    found = explain.explain(pipeline, frame, y, contract, metric, 1, "v1", baseline, path)
    assert found.rows == len(frame) > 100 and found.dependence_rows == 100
    for curve in found.dependence:  # the champion swept on the very rows the candidate was
        assert np.allclose(curve.champion, curve.candidate, atol=1e-3)
    assert found == explain.explain(pipeline, frame, y, contract, metric, 1, "v1", baseline, path)
