"""deploy/components/canary: an overlay that switches it on releases through an Argo Rollouts canary.

Off by default (clusters without Argo Rollouts keep the plain Deployment); production offers it
as two commented lines. Switched on, the render must still be what the GitOps bots and Kubernetes
expect, and the Rollout and its AnalysisTemplate must follow Argo Rollouts' specification
(argo_rollouts.schema.yaml: kubernetes-validate has no schemas for custom resources).
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from governance import gitops
from governance.core import policy
from governance.core.paths import PATHS
from tests.support.kustomize import (
    ARGUMENT,
    BIN,
    CANARY_OFF,
    by_kind,
    deploy_copy,
    render,
    switch_canary_on,
)

SCHEMA = yaml.safe_load((Path(__file__).parent / "argo_rollouts.schema.yaml").read_text())
DIGEST = "sha256:" + "ab" * 32


def validate(obj: dict[str, Any]) -> None:
    schema = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], **SCHEMA[obj["kind"]]}
    jsonschema.Draft202012Validator(schema).validate(obj)


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The production overlay rendered with the canary component switched on."""
    deploy = deploy_copy(tmp_path_factory.mktemp("canary"))
    return by_kind(render(switch_canary_on(deploy, "production")))


def test_production_offers_the_canary_switched_off_and_staging_does_not_offer_it():
    overlays = PATHS.root / "deploy" / "overlays"
    assert CANARY_OFF in (overlays / "production" / "kustomization.yaml").read_text()
    assert "components/canary" not in (overlays / "staging" / "kustomization.yaml").read_text()
    for environment in ("staging", "production"):
        kinds = {obj["kind"] for obj in render(overlays / environment)}
        assert "Deployment" in kinds and not kinds & {"Rollout", "AnalysisTemplate"}, environment


def test_the_rollout_takes_its_pods_from_the_deployment_that_the_autoscaler_no_longer_scales(canary):
    rollout, deployment, hpa = canary["Rollout"], canary["Deployment"], canary["HorizontalPodAutoscaler"]
    spec = rollout["spec"]
    assert "template" not in spec, "one pod definition: the Deployment's"
    assert spec["workloadRef"]["kind"] == "Deployment"
    assert spec["workloadRef"]["name"] == deployment["metadata"]["name"]
    assert spec["workloadRef"]["scaleDown"] == "progressively", "no capacity lost while switching over"
    assert rollout["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": rollout["metadata"]["name"],
    }
    assert "replicas" not in spec and "replicas" not in deployment["spec"], "the autoscaler owns the count"


def test_the_gitops_bots_digest_still_reaches_the_pods_the_canary_runs(tmp_path):
    overlay = switch_canary_on(deploy_copy(tmp_path), "production")
    assert gitops.pin_digest(overlay, DIGEST)
    objects = by_kind(render(overlay))
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith("@" + DIGEST)
    assert objects["Rollout"]["spec"]["workloadRef"]["name"] == objects["Deployment"]["metadata"]["name"]


def test_the_rollout_and_analysis_template_follow_the_argo_rollouts_specification(canary):
    validate(canary["Rollout"])
    validate(canary["AnalysisTemplate"])


@pytest.mark.parametrize(
    ("kind", "spoil"),
    [
        ("Rollout", lambda spec: spec["strategy"]["canary"]["steps"].append({"setweight": 20})),
        ("Rollout", lambda spec: spec.update(template={"spec": {}})),  # both template and workloadRef
        ("AnalysisTemplate", lambda spec: spec["metrics"][0]["provider"]["prometheus"].pop("address")),
        ("AnalysisTemplate", lambda spec: spec["metrics"][0].update(successCondtion="result > 0")),
    ],
    ids=["misspelt-step", "two-pod-sources", "no-prometheus-address", "misspelt-condition"],
)
def test_the_schema_rejects_what_argo_rollouts_would_refuse(canary, kind, spoil):
    spoiled = copy.deepcopy(canary[kind])
    spoil(spoiled["spec"])
    with pytest.raises(jsonschema.ValidationError):
        validate(spoiled)


def test_every_other_object_still_passes_the_kubernetes_schemas(canary, tmp_path):
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(list(canary.values())))
    result = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", manifest], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    unknown = [line for line in result.stdout.splitlines() if "Couldn't find schema" in line]
    assert len(unknown) == 2 and all("argoproj.io/v1alpha1" in line for line in unknown), result.stdout


def test_the_weight_rises_in_steps_and_is_raised_only_after_an_analysis_passed(canary):
    steps = canary["Rollout"]["spec"]["strategy"]["canary"]["steps"]
    weights = [step["setWeight"] for step in steps if "setWeight" in step]
    assert weights == sorted(weights) and len(weights) >= 2 and weights[0] > 0 and weights[-1] < 100
    kinds = [next(iter(step)) for step in steps]
    assert kinds[-1] == "analysis", "the last increase (to 100%) also waits for a passed analysis"
    for index, kind in enumerate(kinds):
        if kind == "setWeight" and index > 0:
            assert kinds[index - 1] == "analysis", f"step {index} raises the weight without an analysis"
        if kind == "analysis":
            assert kinds[index - 1] == "pause", f"step {index} measures before traffic reached the canary"


def test_each_analysis_step_runs_the_template_with_every_argument_it_needs(canary):
    template = canary["AnalysisTemplate"]
    required = {arg["name"] for arg in template["spec"]["args"] if "value" not in arg}
    assert {"namespace", "rollout", "canary-hash", "stable-hash"} <= required
    steps = canary["Rollout"]["spec"]["strategy"]["canary"]["steps"]
    analyses = [step["analysis"] for step in steps if "analysis" in step]
    assert analyses
    for analysis in analyses:
        assert [t["templateName"] for t in analysis["templates"]] == [template["metadata"]["name"]]
        given = {arg["name"]: arg.get("valueFrom") for arg in analysis["args"]}
        assert set(given) == required
        assert given["canary-hash"] == {"podTemplateHashValue": "Latest"}
        assert given["stable-hash"] == {"podTemplateHashValue": "Stable"}


def test_the_analysis_bounds_are_the_policys_canary_section(canary):
    arguments = {arg["name"]: arg.get("value") for arg in canary["AnalysisTemplate"]["spec"]["args"]}
    bounds = policy.load().canary
    assert float(arguments["max-error-rate"]) == bounds.max_error_rate
    assert float(arguments["max-p99-latency-seconds"]) == bounds.max_p99_latency_seconds
    assert float(arguments["max-prediction-shift"]) == bounds.max_prediction_shift
    assert arguments["prometheus-address"].startswith("http"), "the Prometheus address is an argument"


def test_every_metric_can_fail_and_a_measurement_without_data_is_inconclusive(canary):
    """success `result <= bound`, failure `result > bound`: NaN (no data) meets neither."""
    for metric in canary["AnalysisTemplate"]["spec"]["metrics"]:
        bound = metric["successCondition"].removeprefix("result <= ")
        assert ARGUMENT.fullmatch(bound), f"{metric['name']}: success is `result <= <argument>`"
        assert metric["failureCondition"] == "result > " + bound, metric["name"]
        address = ARGUMENT.fullmatch(metric["provider"]["prometheus"]["address"])
        assert address and address[1] == "prometheus-address", metric["name"]
        assert metric["provider"]["prometheus"]["query"].lstrip().startswith("scalar("), (
            f"{metric['name']}: scalar() turns an empty answer into NaN instead of an error"
        )
        assert metric["count"] >= 3 and metric["failureLimit"] < metric["count"]
