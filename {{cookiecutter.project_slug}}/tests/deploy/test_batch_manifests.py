"""deploy/batch renders to a CronJob that scores on the DaskCluster the same kustomization defines.

kubernetes-validate knows the built-in kinds only, so the CronJob and the ConfigMap are checked
against the Kubernetes schemas and the DaskCluster (a custom resource of the Dask operator)
by its structure: what the operator needs, and what ties the job to the cluster.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from governance.core.paths import PATHS

BIN = Path(sys.executable).parent
BATCH = PATHS.root / "deploy" / "batch"


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    result = subprocess.run([BIN / "kubectl", "kustomize", BATCH], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {document["kind"]: document for document in yaml.safe_load_all(result.stdout) if document}


def test_it_renders_a_config_map_a_cron_job_and_a_dask_cluster(rendered):
    assert sorted(rendered) == ["ConfigMap", "CronJob", "DaskCluster"]
    assert rendered["DaskCluster"]["apiVersion"] == "kubernetes.dask.org/v1"


def test_the_built_in_kinds_pass_the_kubernetes_schemas(rendered, tmp_path):
    manifest = tmp_path / "batch.yaml"
    manifest.write_text(yaml.safe_dump_all([rendered["ConfigMap"], rendered["CronJob"]]))
    result = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "--quiet", manifest], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_job_scores_on_the_clusters_scheduler_service(rendered):
    cluster, settings = rendered["DaskCluster"], rendered["ConfigMap"]["data"]
    address = re.fullmatch(r"tcp://([a-z0-9-]+):(\d+)", settings["DASK_SCHEDULER_ADDRESS"])
    assert address, settings["DASK_SCHEDULER_ADDRESS"]
    assert address.group(1) == f"{cluster['metadata']['name']}-scheduler"  # the operator's Service name
    ports = cluster["spec"]["scheduler"]["service"]["ports"]
    assert int(address.group(2)) in [port["port"] for port in ports]
    job = rendered["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = job["containers"][0]
    assert container["envFrom"][0]["configMapRef"]["name"] == rendered["ConfigMap"]["metadata"]["name"]
    assert "mlops score" in " ".join(container["args"])
    assert rendered["CronJob"]["spec"]["concurrencyPolicy"] == "Forbid"


def test_scheduler_workers_and_job_run_one_image_as_non_root(rendered):
    cluster = rendered["DaskCluster"]["spec"]
    job = rendered["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pods = {"scheduler": cluster["scheduler"]["spec"], "worker": cluster["worker"]["spec"], "job": job}
    images = {name: pod["containers"][0]["image"] for name, pod in pods.items()}
    assert len(set(images.values())) == 1, images  # one dask version, one copy of the project
    assert "@sha256:" in images["job"]
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False, name
    worker = cluster["worker"]["spec"]["containers"][0]["args"]
    assert worker[:2] == ["dask", "worker"] and worker[worker.index("--nthreads") + 1] == "1"
    assert cluster["worker"]["replicas"] >= 1


def test_the_overlays_do_not_need_the_dask_operator():
    for overlay in PATHS.overlays.iterdir():
        resources = yaml.safe_load((overlay / "kustomization.yaml").read_text()).get("resources", [])
        assert BATCH.resolve() not in [(overlay / item).resolve() for item in resources], overlay
