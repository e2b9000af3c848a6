"""The generated deploy/ folder renders and validates: Kustomize overlays, Argo CD apps, compose.

Each overlay is rendered with `kubectl kustomize` and every object is validated offline
against the Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors).
Then the rendered objects are read for what the design promises: probes on the OIP health
endpoints, the "restricted" pod security settings, an image pinned by digest.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, tool
from cookiecutter.main import cookiecutter

ENVIRONMENTS = ("staging", "production")
DIGEST_IMAGE = re.compile(r"^(?P<name>[a-z0-9./:-]+)@sha256:[0-9a-f]{64}$")
REPOSITORY = "https://github.com/acme-ml/loan-default-model.git"
CANARY_OFF = "# components:\n#   - ../../components/canary\n"
CANARY_ON = "components:\n  - ../../components/canary\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("deploy")
    context = {"git_init": "no", "github_owner": "acme-ml", "container_registry": "registry.example.com/acme"}
    return Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(output), extra_context=context))


def render(project: Path, overlay: str) -> tuple[str, list[dict]]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(project / "deploy" / overlay)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict]) -> dict[str, dict]:
    kinds = [obj["kind"] for obj in objects]
    assert len(kinds) == len(set(kinds)), f"one object per kind expected, got {kinds}"
    return {obj["kind"]: obj for obj in objects}


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def rendered(request, project) -> tuple[str, dict[str, dict], str]:
    text, objects = render(project, f"overlays/{request.param}")
    return request.param, by_kind(objects), text


def test_every_rendered_object_passes_the_kubernetes_schemas(rendered, tmp_path):
    environment, _, text = rendered
    manifest = tmp_path / f"{environment}.yaml"
    manifest.write_text(text)
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 6, result.stdout


def test_the_base_renders_on_its_own(project):
    _, objects = render(project, "base")
    assert set(by_kind(objects)) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }


def test_overlay_pins_the_image_by_digest_in_its_own_namespace(rendered):
    environment, objects, _ = rendered
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    match = DIGEST_IMAGE.match(container["image"])
    assert match, f"{environment} must pin the image by digest: {container['image']}"
    assert match["name"] == "registry.example.com/acme/loan-default-model"
    assert {obj["metadata"]["namespace"] for obj in objects.values()} == {f"loan-default-model-{environment}"}


def test_pods_meet_the_restricted_security_profile(rendered):
    _, objects, _ = rendered
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs an emptyDir at /tmp"
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_probes_use_the_open_inference_protocol_health_endpoints(rendered):
    _, objects, _ = rendered
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    port_names = {port["name"] for port in container["ports"]}
    for probe in ("readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    # Liveness through the gRPC server's grpc.health.v1 service ("" = the process): the kubelet's
    # gRPC probe takes a port number, which must be the container's gRPC port and GRPC_PORT.
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    liveness = container["livenessProbe"]["grpc"]
    assert liveness["port"] == ports["grpc"] == int(objects["ConfigMap"]["data"]["GRPC_PORT"])
    assert liveness.get("service", "") == ""


def test_service_autoscaler_and_budget_select_the_deployment(rendered):
    _, objects, _ = rendered
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind, selector in (
        ("Service", objects["Service"]["spec"]["selector"]),
        ("PodDisruptionBudget", objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]),
        ("Deployment", objects["Deployment"]["spec"]["selector"]["matchLabels"]),
    ):
        assert selector.items() <= pod_labels.items(), kind
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert objects["PodDisruptionBudget"]["apiVersion"] == "policy/v1"


def test_the_app_reads_its_settings_from_the_generated_config_map(rendered):
    _, objects, _ = rendered
    config_map = objects["ConfigMap"]
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    assert {"CAPTURE_URI", "MODEL_PATH", "PORT", "APP_ENV"} <= set(config_map["data"])
    assert config_map["data"]["APP_ENV"] == "production"  # staging refuses unsafe settings too


def test_the_feedback_key_comes_from_a_secret_that_is_mounted_not_committed(rendered, project):
    _, objects, _ = rendered
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    secret_mounts = {
        mount["mountPath"]: volumes[mount["name"]]["secret"]
        for mount in container["volumeMounts"]
        if "secret" in volumes[mount["name"]]
    }
    key_file = objects["ConfigMap"]["data"]["FEEDBACK_KEY_FILE"]
    folder = key_file.rsplit("/", 1)[0]
    assert folder in secret_mounts, f"{key_file} is not on a mounted Secret: {secret_mounts}"
    assert secret_mounts[folder]["secretName"] == "loan-default-model-feedback"
    assert secret_mounts[folder].get("optional") is not True, "a pod must not start without its key"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == folder)
    assert mount["readOnly"] is True
    assert "Secret" not in {obj["kind"] for obj in objects.values()}, "the key's data is never committed"
    assert "kubectl" in (project / "deploy" / "README.md").read_text().split("feedback Secret")[1]


def test_the_network_policy_admits_only_the_gateway_and_prometheus_to_the_serving_port(rendered):
    _, objects, _ = rendered
    policy = objects["NetworkPolicy"]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}, {"port": "grpc", "protocol": "TCP"}]
    assert {"http", "grpc"} <= {port["name"] for port in container["ports"]}
    service_ports = {port["name"]: port for port in objects["Service"]["spec"]["ports"]}
    assert service_ports["grpc"]["targetPort"] == "grpc"
    assert service_ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"  # gateways route it as gRPC
    admitted = set()
    for peer in rule["from"]:
        # Kustomize's includeSelectors rewrites matchLabels, so a peer selecting by them would
        # end up selecting the model server itself: the peers must use matchExpressions.
        for selector in ("podSelector", "namespaceSelector"):
            assert "matchLabels" not in peer.get(selector, {}), peer
        for expression in peer["podSelector"]["matchExpressions"]:
            admitted.update(expression["values"])
    assert admitted == {"ingress-nginx", "gateway", "prometheus"}


def test_argo_cd_applications_point_at_the_overlays(project):
    for environment in ENVIRONMENTS:
        application = yaml.safe_load((project / "deploy" / "argocd" / f"{environment}.yaml").read_text())
        assert application["apiVersion"] == "argoproj.io/v1alpha1"
        assert application["kind"] == "Application"
        assert application["spec"]["project"] == "loan-default-model", "not Argo CD's open `default`"
        source = application["spec"]["source"]
        assert source["repoURL"] == REPOSITORY
        assert source["targetRevision"] == "main"
        assert (project / source["path"] / "kustomization.yaml").is_file()
        assert source["path"] == f"deploy/overlays/{environment}"
        overlay = yaml.safe_load((project / source["path"] / "kustomization.yaml").read_text())
        assert application["spec"]["destination"]["namespace"] == overlay["namespace"]
    _, objects = render(project, "argocd")
    assert sorted((obj["kind"], obj["metadata"]["name"]) for obj in objects) == [
        ("AppProject", "loan-default-model"),
        ("Application", "loan-default-model-production"),
        ("Application", "loan-default-model-staging"),
        ("Namespace", "loan-default-model-production"),
        ("Namespace", "loan-default-model-staging"),
    ]


# The AppProject fields of Argo CD's CRD (kubernetes-validate knows no argoproj.io schema, so the
# test holds the project to the CRD's field names itself, as --strict would).
APP_PROJECT_FIELDS = {
    "clusterResourceBlacklist",
    "clusterResourceWhitelist",
    "description",
    "destinationServiceAccounts",
    "destinations",
    "namespaceResourceBlacklist",
    "namespaceResourceWhitelist",
    "orphanedResources",
    "permitOnlyProjectScopedClusters",
    "roles",
    "signatureKeys",
    "sourceNamespaces",
    "sourceRepos",
    "syncWindows",
}


def test_argo_cd_objects_render_and_validate(project, tmp_path):
    text, objects = render(project, "argocd")
    manifest = tmp_path / "argocd.yaml"
    manifest.write_text(text)
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 2, result.stdout  # the two Namespaces
    unknown = [line for line in result.stdout.splitlines() if "Couldn't find schema" in line]
    assert all("argoproj.io/v1alpha1" in line for line in unknown), unknown
    (appproject,) = [obj for obj in objects if obj["kind"] == "AppProject"]
    assert appproject["apiVersion"] == "argoproj.io/v1alpha1"
    assert appproject["metadata"]["namespace"] == "argocd"
    assert set(appproject["spec"]) <= APP_PROJECT_FIELDS, set(appproject["spec"]) - APP_PROJECT_FIELDS


def test_argo_cd_project_limits_the_repository_namespaces_and_kinds(project):
    _, objects = render(project, "argocd")
    (appproject,) = [obj for obj in objects if obj["kind"] == "AppProject"]
    spec = appproject["spec"]
    assert spec["sourceRepos"] == [REPOSITORY]
    namespaces = {f"loan-default-model-{environment}" for environment in ENVIRONMENTS}
    destinations = sorted((entry["server"], entry["namespace"]) for entry in spec["destinations"])
    assert destinations == sorted(("https://kubernetes.default.svc", namespace) for namespace in namespaces)
    assert spec.get("clusterResourceWhitelist", []) == [], "the project creates no cluster-scoped object"
    # the namespaces come with the Argo CD objects, held to the pods' "restricted" profile
    created = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Namespace"}
    assert set(created) == namespaces
    for namespace in created.values():
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # every kind the overlays render is allowed, and nothing more
    allowed = {(entry["group"], entry["kind"]) for entry in spec["namespaceResourceWhitelist"]}
    rendered = set()
    for environment in ENVIRONMENTS:
        _, resources = render(project, f"overlays/{environment}")
        rendered |= {(obj["apiVersion"].rpartition("/")[0], obj["kind"]) for obj in resources}
    rendered |= {(obj["apiVersion"].rpartition("/")[0], obj["kind"]) for obj in canary_overlay(project)[1]}
    assert allowed == rendered
    for environment in ENVIRONMENTS:
        application = yaml.safe_load((project / "deploy" / "argocd" / f"{environment}.yaml").read_text())
        assert application["spec"]["project"] == appproject["metadata"]["name"]
        assert application["spec"]["destination"]["namespace"] in namespaces
        assert "CreateNamespace=true" not in application["spec"]["syncPolicy"].get("syncOptions", [])


def test_a_stopping_pod_leaves_the_endpoints_first_and_finishes_in_time(rendered):
    _, objects, _ = rendered
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    pause = int(command[1])
    assert 1 <= pause <= 15
    graceful = float(objects["ConfigMap"]["data"]["GRACEFUL_SHUTDOWN_SECONDS"])
    # uvicorn waits up to `graceful` for in-flight requests, then the capture's last flush may take
    # as long again (app/__main__.py, app/service.py); SIGKILL comes after the grace period.
    assert pod["terminationGracePeriodSeconds"] > pause + 2 * graceful


def test_compose_runs_the_image_read_only_as_the_app_user(project):
    compose = yaml.safe_load((project / "deploy" / "compose.yaml").read_text())
    (service,) = compose["services"].values()
    assert service["read_only"] is True
    assert any(entry.split(":")[0] == "/tmp" for entry in service["tmpfs"])
    assert service["user"].split(":")[0] == "10001"
    assert service["cap_drop"] == ["ALL"]
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    published = {port.rsplit(":", 1)[1] for port in service["ports"]}
    assert {service["environment"]["PORT"], service["environment"]["GRPC_PORT"]} <= published
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert service["environment"]["FEEDBACK_KEY_FILE"] == "/run/secrets/feedback_key"
    assert service["secrets"] == ["feedback_key"] and "file" in compose["secrets"]["feedback_key"]
    assert (project / "deploy" / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_the_image_exposes_rest_and_grpc(project):
    dockerfile = (project / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^EXPOSE 8080 8081$", dockerfile, re.MULTILINE)
    assert re.search(r"^\s+GRPC_PORT=8081 \\$", dockerfile, re.MULTILINE)
    # the trimmed environment's smoke test imports the gRPC stack, so a trim that breaks it fails the build
    assert "import numpy as np, onnxruntime as ort, fastapi, uvicorn, yaml, grpc, grpc_health" in dockerfile


# -- canary releases with Argo Rollouts (deploy/components/canary) --------------------------------
def canary_overlay(project: Path) -> tuple[str, list[dict]]:
    """The production overlay with its canary component switched on, in a copy of deploy/."""
    copy = project.parent / f"{project.name}-canary"
    if not copy.exists():
        shutil.copytree(project / "deploy", copy / "deploy")
        kustomization = copy / "deploy" / "overlays" / "production" / "kustomization.yaml"
        text = kustomization.read_text()
        assert text.count(CANARY_OFF) == 1, "production offers the canary as two commented lines"
        kustomization.write_text(text.replace(CANARY_OFF, CANARY_ON))
    return render(copy, "overlays/production")


def test_the_canary_is_off_by_default_and_offered_in_production_only(project):
    assert CANARY_OFF in (project / "deploy/overlays/production/kustomization.yaml").read_text()
    assert "components/canary" not in (project / "deploy/overlays/staging/kustomization.yaml").read_text()
    assert "Canary releases" in (project / "deploy" / "README.md").read_text()


def test_the_canary_overlay_renders_and_validates(project, tmp_path):
    text, _ = canary_overlay(project)
    manifest = tmp_path / "canary.yaml"
    manifest.write_text(text)
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 6, result.stdout  # everything but the two Argo Rollouts kinds
    unknown = [line for line in result.stdout.splitlines() if "Couldn't find schema" in line]
    assert len(unknown) == 2 and all("argoproj.io/v1alpha1" in line for line in unknown), unknown


def test_the_canary_rollout_runs_the_pinned_deployments_pods_and_analyses_each_step(project):
    objects = by_kind(canary_overlay(project)[1])
    rollout, deployment = objects["Rollout"], objects["Deployment"]
    assert rollout["spec"]["workloadRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
        "scaleDown": "progressively",
    }
    assert objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert DIGEST_IMAGE.match(container["image"]), "the overlay's digest still reaches the pods"
    assert {obj["metadata"]["namespace"] for obj in objects.values()} == {"loan-default-model-production"}
    template = objects["AnalysisTemplate"]
    assert [metric["name"] for metric in template["spec"]["metrics"]] == [
        "error-rate",
        "p99-latency",
        "prediction-shift",
    ]
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    assert [step["setWeight"] for step in steps if "setWeight" in step] == [10, 50]
    for step in steps:
        if "analysis" in step:
            assert step["analysis"]["templates"] == [{"templateName": template["metadata"]["name"]}]
