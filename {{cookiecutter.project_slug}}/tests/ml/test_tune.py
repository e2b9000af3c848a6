"""`make tune`: a checked search space, trials judged by the policy, and a params.yaml diff."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import yaml

from governance.cli import main
from governance.core.paths import Paths
from ml import tracking
from ml.train import load_params
from ml.tune import Dimension, SearchSpaceError, choose, load_space, pareto_front, tune, write_params
from tests.support.training import PROJECT, make_workspace


def trial(number: int, primary: float, gap: float, feasible: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        number=number, values=[primary, gap], constraints={"primary_metric": -0.1 if feasible else 0.2}
    )


def test_the_project_declares_a_search_space_for_every_family():
    from ml.estimator import FAMILIES

    for family in FAMILIES:
        assert load_space(PROJECT / "ml" / "search_space.yaml", family)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"type": "float", "low": 1.0, "high": 1.0}, "low < high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log: true needs low > 0"),
        ({"type": "categorical"}, "non-empty 'choices'"),
        ({"type": "text", "low": 1, "high": 2}, "type"),
    ],
)
def test_a_broken_dimension_is_refused_naming_the_setting_and_rule(tmp_path, raw, named):
    path = tmp_path / "search_space.yaml"
    path.write_text(yaml.safe_dump({"linear": {"C": raw}}))
    with pytest.raises(SearchSpaceError) as refused:
        load_space(path, "linear")
    assert "linear" in str(refused.value) and "C" in str(refused.value) and named in str(refused.value)


def test_a_family_without_a_search_space_is_named(tmp_path):
    path = tmp_path / "search_space.yaml"
    path.write_text(yaml.safe_dump({"linear": {"C": {"type": "float", "low": 0.1, "high": 1.0}}}))
    with pytest.raises(SearchSpaceError, match="no search space for model_family 'random_forest'"):
        load_space(path, "random_forest")


def test_the_front_holds_only_feasible_trials_no_other_beats():
    trials = [trial(0, 0.80, 0.05), trial(1, 0.82, 0.08), trial(2, 0.79, 0.09), trial(3, 0.90, 0.01, False)]
    front = pareto_front(trials, maximise_primary=True)
    assert [t.number for t in front] == [0, 1]


def test_the_chosen_trial_has_the_best_primary_metric_on_the_front():
    front = [trial(0, 0.80, 0.05), trial(1, 0.82, 0.08)]
    assert choose(front, maximise_primary=True).number == 1
    assert choose(front, maximise_primary=False).number == 0  # an error metric: lower is better
    assert choose([], maximise_primary=True) is None


def test_an_integer_dimension_suggests_integers():
    dimension = Dimension(type="int", low=2, high=6)
    seen = SimpleNamespace(suggest_int=lambda name, low, high, step, log: (name, low, high, step, log))
    assert dimension.suggest(seen, "max_depth") == ("max_depth", 2, 6, 1, False)


def test_writing_the_chosen_settings_keeps_comments_and_returns_the_diff(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "# why these values\nestimators:\n  linear:  # the family\n    C: 1.0\n    max_iter: 1000\n"
    )
    diff = write_params(path, "linear", {"C": 0.123456789})
    text = path.read_text()
    assert "# why these values" in text and "# the family" in text
    assert "C: 0.123457" in text and "max_iter: 1000" in text
    assert "-    C: 1.0" in diff and "+    C: 0.123457" in diff


@pytest.mark.slow
def test_tune_runs_nested_trials_draws_the_front_and_writes_a_params_diff(tmp_path, monkeypatch, capsys):
    paths = Paths(make_workspace(tmp_path / "project"))
    shutil.copy(PROJECT / "ml" / "search_space.yaml", paths.search_space)
    monkeypatch.setenv(tracking.SWITCH, "on")
    before = paths.params.read_text()
    assert main(["--root", str(paths.root), "tune", "--trials", "3"]) == 0
    out, err = capsys.readouterr()
    assert ": 3 trial(s)" in out
    assert "--- a/ml/params.yaml" in out and paths.params.read_text() != before
    assert err.count("trial ") >= 3  # one progress line per trial
    assert (paths.tuning_reports / "pareto.png").stat().st_size > 1000
    assert "Pareto front" in (paths.tuning_reports / "index.html").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.local_uri(paths))
    experiment = client.get_experiment_by_name(load_params(paths.params).model_name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags.get("kind") == "tuning"]
    assert len(parents) == 1
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 3

    outcome = tune(paths, trials=2, jobs=2)  # resumed, not restarted; two trials side by side
    assert len(outcome.trials) == 5
