"""Policy gates: each requirement in governance/policy.yaml passes or fails with its margin, and a
failing gate stops `train` (exit 1) and `register` without touching the registry."""

import pytest
import yaml

from governance import registry
from governance.cli import main
from governance.core import policy as policy_file
from governance.core.encoding import Scorer
from governance.core.policy import PolicyError
from governance.core.records import Baseline, Bias, GateReport, Parity, read_json
from governance.core.tasks import REGRESSION
from ml.gates import check, single_row_latency_ms
from tests.support.training import PROJECT

METRICS = {"roc_auc": 0.80, "accuracy": 0.75}
BIAS = Bias(sensitive_attribute="sex", metric="selection_rate", gaps={"selection_rate": 0.05})
PARITY = Parity(
    version="v2",
    rows=100,
    max_abs_diff=1e-7,
    mean_abs_diff=1e-8,
    labels_equal=True,
    mismatched_labels=0,
    tolerance=0.001,
    passed=True,
)


@pytest.fixture
def policy(policy):
    """The project's policy with the binary requirements these gate tests are written for (any bake)."""
    model = policy.model.model_copy(
        update={"primary_metric": "roc_auc", "min_primary_metric": 0.70, "max_primary_metric": None}
    )
    bias = policy.bias.model_copy(update={"metric": "selection_rate", "max_gap": 0.15})
    return policy.model_copy(update={"model": model, "bias": bias})


def by_name(gates):
    return {gate.name: gate for gate in gates}


def test_a_candidate_within_every_requirement_passes_with_positive_margins(policy):
    gates = by_name(check(policy, METRICS, BIAS, PARITY, 0.05, None))
    assert all(gate.passed for gate in gates.values())
    assert gates["primary_metric"].margin == pytest.approx(0.80 - policy.model.min_primary_metric)
    assert gates["bias_gap"].margin == pytest.approx(policy.bias.max_gap - 0.05)
    assert gates["onnx_latency"].value == 0.05
    assert "no champion" in gates["regression_vs_champion"].message


def test_a_low_metric_fails_and_says_by_how_much(policy):
    gates = check(policy, {**METRICS, "roc_auc": 0.60}, BIAS, PARITY, 0.05, None)
    gate = by_name(gates)["primary_metric"]
    assert not gate.passed
    assert gate.margin == pytest.approx(0.60 - policy.model.min_primary_metric)
    report = GateReport(version="v2", passed=False, policy="governance/policy.yaml", gates=tuple(gates))
    (line,) = report.failures()
    assert "model.min_primary_metric" in line
    assert f"is {policy.model.min_primary_metric - 0.60:.4f} below the minimum" in line


def test_a_bias_gap_above_the_maximum_fails(policy):
    wide = BIAS.model_copy(update={"gaps": {"selection_rate": 0.4}})
    gate = by_name(check(policy, METRICS, wide, PARITY, 0.05, None))["bias_gap"]
    assert not gate.passed
    assert gate.margin == pytest.approx(policy.bias.max_gap - 0.4)
    assert gate.requirement == "bias.max_gap"


def test_without_a_sensitive_attribute_the_bias_gate_passes_with_a_note(policy):
    none = Bias(metric="selection_rate", note="no sensitive attribute in the data contract")
    gate = by_name(check(policy, METRICS, none, PARITY, 0.05, None))["bias_gap"]
    assert gate.passed and gate.value is None and "not applicable" in gate.message


def test_parity_fails_on_a_large_difference_or_any_label_mismatch(policy):
    far = PARITY.model_copy(update={"max_abs_diff": 0.5})
    assert not by_name(check(policy, METRICS, BIAS, far, 0.05, None))["onnx_parity"].passed
    flipped = PARITY.model_copy(update={"labels_equal": False, "mismatched_labels": 2})
    gate = by_name(check(policy, METRICS, BIAS, flipped, 0.05, None))["onnx_parity"]
    assert not gate.passed and "2 label(s) differ" in gate.message


def test_slow_single_row_inference_fails_the_latency_gate(policy):
    limit = policy.onnx.max_single_row_latency_ms
    gate = by_name(check(policy, METRICS, BIAS, PARITY, limit * 2, None))["onnx_latency"]
    assert not gate.passed and gate.margin == pytest.approx(-limit)


def test_regression_versus_the_champion_is_bounded(policy):
    allowed = policy.model.max_regression_vs_champion
    close = Baseline(version="v1", value=METRICS["roc_auc"] + allowed / 2, basis="re-scored")
    far = Baseline(version="v1", value=METRICS["roc_auc"] + allowed * 2, basis="re-scored")
    assert by_name(check(policy, METRICS, BIAS, PARITY, 0.05, close))["regression_vs_champion"].passed
    gate = by_name(check(policy, METRICS, BIAS, PARITY, 0.05, far))["regression_vs_champion"]
    assert not gate.passed and "v1" in gate.message
    assert gate.margin == pytest.approx(-allowed)


def test_a_registered_metric_from_another_test_split_is_not_compared_unless_the_policy_allows_it(policy):
    elsewhere = Baseline(
        version="v1", value=0.81, basis="registered metric on its own test split", comparable=False
    )
    gate = by_name(check(policy, METRICS, BIAS, PARITY, 0.05, elsewhere))["regression_vs_champion"]
    assert policy.model.regression_fallback == "fail"
    assert not gate.passed and gate.value is None
    assert gate.requirement == "model.regression_fallback"
    assert "not comparable" in gate.message and "make champion" in gate.message
    lenient = policy.model_copy(
        update={"model": policy.model.model_copy(update={"regression_fallback": "registered_metric"})}
    )
    gate = by_name(check(lenient, METRICS, BIAS, PARITY, 0.05, elsewhere))["regression_vs_champion"]
    assert gate.passed and gate.value == pytest.approx(0.01)
    assert "registered metric on its own test split" in gate.message


def lower_is_better(policy, metric="rmse", bound=50.0):
    """The policy with a primary metric where lower is better, bounded at most `bound`."""
    model = policy.model.model_copy(
        update={"primary_metric": metric, "min_primary_metric": None, "max_primary_metric": bound}
    )
    return policy.model_copy(update={"model": model})


def test_a_lower_is_better_metric_must_be_at_most_its_maximum(policy):
    strict = lower_is_better(policy)
    fine = by_name(check(strict, {"rmse": 40.0}, BIAS, PARITY, 0.05, None, REGRESSION))["primary_metric"]
    assert fine.passed and fine.margin == pytest.approx(10.0)
    assert fine.requirement == "model.max_primary_metric" and "(required: at most 50)" in fine.message
    high = by_name(check(strict, {"rmse": 62.5}, BIAS, PARITY, 0.05, None, REGRESSION))["primary_metric"]
    assert not high.passed and high.margin == pytest.approx(-12.5)
    assert "exceeds the maximum 50 by 12.5 (required: at most 50)" in high.message


def test_a_higher_is_better_metric_must_be_at_least_its_minimum(policy):
    gate = by_name(check(policy, {**METRICS, "roc_auc": 0.60}, BIAS, PARITY, 0.05, None))["primary_metric"]
    assert f"(required: at least {policy.model.min_primary_metric:.4f})" in gate.message


def test_the_champion_comparison_follows_the_metric_direction(policy):
    strict = lower_is_better(policy)
    allowed = strict.model.max_regression_vs_champion
    champion = Baseline(version="v1", value=40.0, basis="re-scored")
    better = by_name(check(strict, {"rmse": 39.0}, BIAS, PARITY, 0.05, champion, REGRESSION))
    assert better["regression_vs_champion"].passed
    assert better["regression_vs_champion"].value == pytest.approx(-1.0)  # a lower rmse is an improvement
    worse = by_name(check(strict, {"rmse": 40.0 + allowed * 2}, BIAS, PARITY, 0.05, champion, REGRESSION))
    gate = worse["regression_vs_champion"]
    assert not gate.passed and gate.value == pytest.approx(allowed * 2) and "lower is better" in gate.message


def test_the_parity_gate_says_what_it_measured_for_the_task(policy):
    gate = by_name(check(policy, METRICS, BIAS, PARITY, 0.05, None, REGRESSION))["onnx_parity"]
    assert "(1 + |sklearn|)" in gate.message


def test_single_row_latency_is_measured_with_onnxruntime(linear_model, example_contract, policy):
    latency = single_row_latency_ms(Scorer(linear_model.content), linear_model.frame, example_contract)
    assert 0 < latency < policy.onnx.max_single_row_latency_ms


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("model", "primary_metric", "auc"),
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
    with pytest.raises(PolicyError, match=f"field '{section}.{key}'"):
        policy_file.load(path)


def test_a_policy_minimum_above_the_model_fails_train_and_registers_nothing(workspace_copy, capsys):
    paths, _ = workspace_copy
    raw = yaml.safe_load(paths.policy.read_text())
    raw["model"]["min_primary_metric"] = 0.99
    paths.policy.write_text(yaml.safe_dump(raw))
    before = paths.registry.read_bytes()

    assert main(["--root", str(paths.root), "train"]) == 1
    err = capsys.readouterr().err
    assert "gate 'primary_metric' failed" in err
    assert "model.min_primary_metric" in err
    assert "below the minimum 0.9900" in err
    assert "will not be registered" in err

    assert main(["--root", str(paths.root), "register"]) == 1
    assert "cannot be registered" in capsys.readouterr().err
    assert paths.registry.read_bytes() == before
    assert not list(paths.cards.glob("*.md"))

    # Break glass: registered on a stated reason, which the entry and the model card keep.
    reason = "incident 42: the vendor's model is worse; accepted by the risk owner"
    assert main(["--root", str(paths.root), "register", "--override", "  "]) == 1, "a blank reason is none"
    assert main(["--root", str(paths.root), "register", "--override", reason]) == 0
    assert "failed its gates; registered on override" in capsys.readouterr().out
    (entry,) = registry.load(paths.registry).models
    assert entry.stage == "candidate" and entry.override == reason
    assert (
        f"| Registered past failing gates | {reason} |" in (paths.cards / f"{entry.version}.md").read_text()
    )


def test_a_candidate_is_compared_with_the_champion_on_the_same_rows(workspace_copy):
    paths, version = workspace_copy
    assert main(["--root", str(paths.root), "register"]) == 0
    registry.set_stage(version, "production", paths.registry)
    assert main(["--root", str(paths.root), "train"]) == 0
    gates = read_json(GateReport, paths.models / version / "gates.json")
    assert gates.champion is not None and gates.champion.version == version
    assert gates.champion.comparable and gates.champion.basis.startswith("re-scored")
    regression = next(gate for gate in gates.gates if gate.name == "regression_vs_champion")
    assert regression.passed and regression.value == pytest.approx(0.0, abs=1e-6)


def test_without_the_champions_file_train_refuses_a_cross_split_comparison(workspace_copy, capsys):
    paths, version = workspace_copy
    assert main(["--root", str(paths.root), "register"]) == 0
    registry.set_stage(version, "production", paths.registry)
    (paths.models / version / "model.onnx").unlink()  # as in a CI checkout
    assert main(["--root", str(paths.root), "train"]) == 1
    err = capsys.readouterr().err
    assert "gate 'regression_vs_champion' failed" in err
    assert "not comparable" in err and "make champion" in err
    gates = read_json(GateReport, paths.models / version / "gates.json")
    assert gates.champion is not None and gates.champion.comparable is False
