"""The canary analysis (deploy/components/canary) queries series this service really exports.

Prometheus answers a query about a misspelt metric or label with an empty result, never an error,
so a wrong name would leave every canary Inconclusive. Here each query of the AnalysisTemplate is
resolved as an AnalysisRun resolves it and every series selector in it is checked against a scrape
of /metrics after the scoring requests the analysis measures (REST /predict, Open Inference
Protocol REST and gRPC).
"""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.grpc_server import SERVICE
from tests.support.kustomize import by_kind, deploy_copy, render, resolve, switch_canary_on
from tests.support.serving import MODEL_NAME, infer_body, sample_records

SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
# Target labels Prometheus adds to every series of a scraped pod (the app cannot export them).
SCRAPE_LABELS = {"namespace", "pod"}
ROLLOUT, CANARY, STABLE = "my-model", "6f7c9d", "5b8e2a"
ARGUMENTS = {
    "namespace": "models",
    "rollout": ROLLOUT,
    "canary-hash": CANARY,
    "stable-hash": STABLE,
    "prometheus-address": "http://prometheus:9090",
}


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each analysis metric's PromQL, with the arguments filled in."""
    deploy = deploy_copy(tmp_path_factory.mktemp("canary"))
    template = by_kind(render(switch_canary_on(deploy, "production")))["AnalysisTemplate"]
    return {
        metric["name"]: resolve(metric["provider"]["prometheus"]["query"], ARGUMENTS)
        for metric in template["spec"]["metrics"]
    }


@pytest.fixture
def scraped(client, contract) -> dict[str, set[str]]:
    """{sample name: its label names} from /metrics after REST and OIP scoring requests."""
    records = sample_records(contract, 3)
    assert client.post("/predict", json={"records": records}).status_code == 200
    assert (
        client.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(contract, records)).status_code == 200
    )
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def selectors(query: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric name, {label: (operator, value)}) for every series selector in the query."""
    found = []
    for name, matchers in SELECTOR.findall(query):
        found.append((name, {label: (op, value) for label, op, value in MATCHER.findall(matchers)}))
    return found


def test_the_analysis_measures_errors_latency_and_the_prediction_distribution(queries):
    assert set(queries) == {"error-rate", "p99-latency", "prediction-shift"}
    assert all(selectors(query) for query in queries.values())


def unexported(query: str, scraped: dict[str, set[str]]) -> list[str]:
    """What the query reads that the scrape does not hold: series names and label names."""
    problems = []
    for name, matchers in selectors(query):
        if name not in scraped:
            problems.append(f"no series {name}")
            continue
        problems += [
            f"{name} has no label {label}" for label in sorted(set(matchers) - scraped[name] - SCRAPE_LABELS)
        ]
    for grouping in re.findall(r"by\s*\(([^)]*)\)", query):
        for label in (part.strip() for part in grouping.split(",")):
            if not any(label in labels for labels in scraped.values()):
                problems.append(f"no series has the label {label}")
    return problems


def test_every_selector_names_an_exported_series_and_its_labels(queries, scraped):
    for metric, query in queries.items():
        assert not unexported(query, scraped), (
            f"{metric}: {unexported(query, scraped)} (/metrics has {sorted(scraped)})"
        )


def test_a_misspelt_series_or_label_is_reported(queries, scraped):
    query = queries["error-rate"]
    assert unexported(query.replace("http_requests_total", "http_request_total", 1), scraped) == [
        "no series http_request_total"
    ]
    assert unexported(query.replace("status=~", "code=~"), scraped) == [
        "http_requests_total has no label code"
    ]
    assert unexported(queries["p99-latency"].replace("by (le)", "by (bucket)"), scraped) == [
        "no series has the label bucket"
    ]


def test_every_selector_reads_only_this_rollouts_canary_or_stable_pods(queries):
    canary = re.compile(f"{ROLLOUT}-{CANARY}-.+")
    for metric, query in queries.items():
        for name, matchers in selectors(query):
            assert matchers["namespace"] == ("=", ARGUMENTS["namespace"]), (metric, name)
            operator, pattern = matchers["pod"]
            assert operator == "=~", (metric, name)
            assert pattern in {f"{ROLLOUT}-{CANARY}-.+", f"{ROLLOUT}-{STABLE}-.+"}, (metric, name)
        pods = {selector[1]["pod"][1] for selector in selectors(query)}
        if metric != "prediction-shift":
            assert pods == {canary.pattern}, f"{metric} judges the canary's own pods"
    shift = {selector[1]["pod"][1] for selector in selectors(queries["prediction-shift"])}
    assert len(shift) == 2, "the prediction shift compares the canary with the stable pods"
    assert re.fullmatch(
        f"{ROLLOUT}-{CANARY}-.+", f"{ROLLOUT}-{CANARY}-x7k2p"
    )  # a pod of the canary ReplicaSet
    assert not re.fullmatch(f"{ROLLOUT}-{CANARY}-.+", f"{ROLLOUT}-{STABLE}-x7k2p")


def route_and_status_patterns(query: str) -> list[tuple[str, str | None]]:
    return [
        (matchers["route"][1], matchers.get("status", (None, None))[1])
        for name, matchers in selectors(query)
        if "route" in matchers
    ]


@pytest.mark.parametrize("metric", ["error-rate", "p99-latency"])
def test_the_request_queries_count_every_scoring_route_and_nothing_else(queries, scraped, client, metric):
    recorded = set(re.findall(r'route="([^"]+)"', client.get("/metrics").text))
    scoring = {"/predict", "/v2/models/{name}/infer", f"/{SERVICE}/ModelInfer"}
    assert {"/predict", "/v2/models/{name}/infer"} <= recorded  # the route labels the app writes
    others = {
        "/metrics",
        "/v2/health/ready",
        "/v2/health/live",
        "/feedback",
        "other",
        f"/{SERVICE}/ModelReady",
    }
    patterns = route_and_status_patterns(queries[metric])
    assert patterns
    for route_pattern, _ in patterns:
        # PromQL regular expressions are anchored at both ends, as fullmatch is.
        assert all(re.fullmatch(route_pattern, route) for route in scoring), route_pattern
        assert not any(re.fullmatch(route_pattern, route) for route in others), route_pattern


def test_the_error_rate_counts_server_errors_only(queries):
    statuses = [status for _, status in route_and_status_patterns(queries["error-rate"]) if status]
    assert len(statuses) == 1, "one selector counts the errors, the other all requests"
    (pattern,) = statuses
    assert all(re.fullmatch(pattern, code) for code in ("500", "503"))
    assert not any(re.fullmatch(pattern, code) for code in ("200", "400", "422", "429"))


def test_the_prediction_shift_reads_the_series_of_this_task(queries, scraped, contract):
    names = {name for name, _ in selectors(queries["prediction-shift"])}
    expected = "model_score" if contract.target.is_classification else "model_value"
    assert names == {f"{expected}_sum", f"{expected}_count"}, names
    assert scraped[f"{expected}_count"] == set(), "one series per pod: no label to sum over"
