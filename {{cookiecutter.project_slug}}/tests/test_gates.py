"""Policy gates: each requirement in governance/policy.yaml passes or fails with its margin, and a
failing gate stops `train` (exit 1) and `register` without touching the registry."""

import json
from dataclasses import replace

import pytest
import yaml

from governance import registry
from ml import cli
from ml.export import session
from ml.gates import Baseline, PolicyError, check, failures, load_policy, single_row_latency_ms
from tests.ml_support import PROJECT, contract, copy_workspace, trained

POLICY = load_policy(PROJECT / "governance" / "policy.yaml")
METRICS = {"roc_auc": 0.80, "accuracy": 0.75}
BIAS = {"sensitive_attribute": "sex", "metric": "selection_rate", "gaps": {"selection_rate": 0.05}}
PARITY = {"max_abs_diff": 1e-7, "labels_equal": True, "mismatched_labels": 0}


def by_name(gates):
    return {gate.name: gate for gate in gates}


def test_a_candidate_within_every_requirement_passes_with_positive_margins():
    gates = by_name(check(POLICY, METRICS, BIAS, PARITY, 0.05, None))
    assert all(gate.passed for gate in gates.values())
    assert gates["primary_metric"].margin == pytest.approx(0.80 - POLICY.min_primary_metric)
    assert gates["bias_gap"].margin == pytest.approx(POLICY.max_bias_gap - 0.05)
    assert gates["onnx_latency"].value == 0.05
    assert "no champion" in gates["regression_vs_champion"].message


def test_a_low_metric_fails_and_says_by_how_much():
    gates = check(POLICY, {**METRICS, "roc_auc": 0.60}, BIAS, PARITY, 0.05, None)
    gate = by_name(gates)["primary_metric"]
    assert not gate.passed
    assert gate.margin == pytest.approx(0.60 - POLICY.min_primary_metric)
    (line,) = failures(gates, "governance/policy.yaml")
    assert "model.min_primary_metric" in line
    assert f"is {POLICY.min_primary_metric - 0.60:.4f} below the minimum" in line


def test_a_bias_gap_above_the_maximum_fails():
    gate = by_name(check(POLICY, METRICS, {**BIAS, "gaps": {"selection_rate": 0.4}}, PARITY, 0.05, None))[
        "bias_gap"
    ]
    assert not gate.passed
    assert gate.margin == pytest.approx(POLICY.max_bias_gap - 0.4)
    assert gate.requirement == "bias.max_gap"


def test_without_a_sensitive_attribute_the_bias_gate_passes_with_a_note():
    gate = by_name(check(POLICY, METRICS, {"sensitive_attribute": None}, PARITY, 0.05, None))["bias_gap"]
    assert gate.passed and gate.value is None and "not applicable" in gate.message


def test_parity_fails_on_a_large_difference_or_any_label_mismatch():
    wide = by_name(check(POLICY, METRICS, BIAS, {**PARITY, "max_abs_diff": 0.5}, 0.05, None))["onnx_parity"]
    assert not wide.passed
    flipped = {**PARITY, "labels_equal": False, "mismatched_labels": 2}
    gate = by_name(check(POLICY, METRICS, BIAS, flipped, 0.05, None))["onnx_parity"]
    assert not gate.passed and "2 label(s) differ" in gate.message


def test_slow_single_row_inference_fails_the_latency_gate():
    slow = POLICY.max_single_row_latency_ms * 2
    gate = by_name(check(POLICY, METRICS, BIAS, PARITY, slow, None))["onnx_latency"]
    assert not gate.passed and gate.margin == pytest.approx(-POLICY.max_single_row_latency_ms)


def test_regression_versus_the_champion_is_bounded():
    allowed = POLICY.max_regression_vs_champion
    close = Baseline("v1", METRICS["roc_auc"] + allowed / 2, "registered metric")
    far = Baseline("v1", METRICS["roc_auc"] + allowed * 2, "registered metric")
    assert by_name(check(POLICY, METRICS, BIAS, PARITY, 0.05, close))["regression_vs_champion"].passed
    gate = by_name(check(POLICY, METRICS, BIAS, PARITY, 0.05, far))["regression_vs_champion"]
    assert not gate.passed and "v1" in gate.message
    assert gate.margin == pytest.approx(-allowed)


def test_a_registered_metric_from_another_test_split_is_not_compared_unless_the_policy_allows_it():
    elsewhere = Baseline("v1", 0.81, "registered metric on its own test split", comparable=False)
    gate = by_name(check(POLICY, METRICS, BIAS, PARITY, 0.05, elsewhere))["regression_vs_champion"]
    assert POLICY.regression_fallback == "fail"
    assert not gate.passed and gate.value is None
    assert gate.requirement == "model.regression_fallback"
    assert "not comparable" in gate.message and "make champion" in gate.message
    lenient = replace(POLICY, regression_fallback="registered_metric")
    gate = by_name(check(lenient, METRICS, BIAS, PARITY, 0.05, elsewhere))["regression_vs_champion"]
    assert gate.passed and gate.value == pytest.approx(0.01)
    assert "registered metric on its own test split" in gate.message


def test_single_row_latency_is_measured_with_onnxruntime():
    model = trained("logistic_regression")
    latency = single_row_latency_ms(session(model.content), model.frame, contract())
    assert 0 < latency < POLICY.max_single_row_latency_ms


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("model", "primary_metric", "log_loss"),
        ("model", "min_primary_metric", 1.5),
        ("bias", "metric", "vibes"),
        ("bias", "max_gap", -0.1),
        ("onnx", "opset", "17"),
        ("onnx", "parity_tolerance", 0),
        ("model", "regression_fallback", "ignore"),
    ],
)
def test_it_rejects_a_policy_the_gates_could_misread(tmp_path, section, key, value):
    raw = yaml.safe_load((PROJECT / "governance" / "policy.yaml").read_text())
    raw[section][key] = value
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match=f"{section}.{key}"):
        load_policy(path)


def test_a_policy_minimum_above_the_model_fails_train_and_registers_nothing(tmp_path_factory, capsys):
    root, _ = copy_workspace(tmp_path_factory, "strict-policy")
    policy_path = root / "governance" / "policy.yaml"
    raw = yaml.safe_load(policy_path.read_text())
    raw["model"]["min_primary_metric"] = 0.99
    policy_path.write_text(yaml.safe_dump(raw))
    registry_path = root / "governance" / "registry.yaml"
    before = registry_path.read_bytes()

    assert cli.main(["train", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "gate 'primary_metric' failed" in err
    assert "model.min_primary_metric" in err
    assert "below the minimum 0.9900" in err
    assert "will not be registered" in err

    assert cli.main(["register", "--root", str(root)]) == 1
    assert "cannot be registered" in capsys.readouterr().err
    assert registry_path.read_bytes() == before
    assert not list((root / "governance").glob("model_cards/*.md"))


def test_a_candidate_is_compared_with_the_champion_on_the_same_rows(tmp_path_factory):
    root, version = copy_workspace(tmp_path_factory, "with-champion")
    assert cli.main(["register", "--root", str(root)]) == 0
    registry.set_stage(version, "production", root / "governance" / "registry.yaml")
    assert cli.main(["train", "--root", str(root)]) == 0
    gates = json.loads((root / "artifacts" / "models" / version / "gates.json").read_text())
    assert gates["champion"]["version"] == version
    assert gates["champion"]["basis"].startswith("re-scored")
    regression = next(gate for gate in gates["gates"] if gate["name"] == "regression_vs_champion")
    assert regression["passed"] and regression["value"] == pytest.approx(0.0, abs=1e-6)


def test_without_the_champions_file_train_refuses_a_cross_split_comparison(tmp_path_factory, capsys):
    root, version = copy_workspace(tmp_path_factory, "champion-file-missing")
    assert cli.main(["register", "--root", str(root)]) == 0
    registry.set_stage(version, "production", root / "governance" / "registry.yaml")
    (root / "artifacts" / "models" / version / "model.onnx").unlink()  # as in a CI checkout
    assert cli.main(["train", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "gate 'regression_vs_champion' failed" in err
    assert "not comparable" in err and "make champion" in err
    gates = json.loads((root / "artifacts" / "models" / version / "gates.json").read_text())
    assert gates["champion"]["comparable"] is False
