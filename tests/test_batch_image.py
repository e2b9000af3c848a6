"""The batch image (`make image-batch`) scores as `make score` does, alone and as a Dask cluster.

deploy/batch/ runs one image three ways: the nightly CronJob (`mlops score`), and the DaskCluster's
scheduler and workers (`dask scheduler`, `dask worker`). This bakes the defaults, trains, scores a
file with `make score` on the host, builds the image and then scores the same file in containers as
production runs them (read-only root, no capabilities, uid 10001): once embedded, once with the
job handing the rows to a scheduler and a worker container. Every prediction and every rejected row
must equal the host's, and the rows must name the registered model version the image carries.
Then the image is pushed to a local registry (LOCAL STAND-IN: the CNCF distribution registry, as in
the demo) with `make image-push-batch`, and staging and promotion pin that digest in deploy/batch.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, bake_defaults, free_port, project_env, run_make

sys.path.insert(0, str(ROOT / "scripts"))  # the demo's registry stand-in
from demo_standins import RegistryStandIn

pytestmark = pytest.mark.slow

HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, engine: dict[str, str]) -> Iterator[dict]:
    """The default bake, trained, with its batch image built; removed with its containers after."""
    folder = bake_defaults(tmp_path_factory.mktemp("batch-image"))
    trained = run_make(folder, "install", "data", "train", "register")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    env = {key: engine[key] for key in ("DOCKER_HOST", "CONTAINERS_CONF", "BASE_IMAGE") if key in engine}
    tag = f"t{uuid.uuid4().hex[:8]}"
    built = run_make(
        folder, "image-batch", "BATCH_IMAGE=localhost/batch-image-test", f"TAG={tag}", timeout=1800, **env
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    image = f"localhost/batch-image-test:{tag}"
    yield {"root": folder, "image": image, "env": env, "tag": tag}
    docker(env, "image", "rm", "--force", image)


def docker(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], env=project_env(**env), capture_output=True, text=True, timeout=timeout
    )


# Run with the baked project's interpreter (pyarrow lives there, not in the template's tools).
MAKE_INPUT = """
import sys
from pathlib import Path
import pyarrow as pa, pyarrow.parquet as pq
from governance.core.contract import load
contract = load()
names = contract.feature_names
snapshot = next(Path("artifacts/snapshots").glob("*/data.parquet"))
table = pq.read_table(snapshot, columns=names).slice(0, 3000)
bounded = next(f for f in contract.features if f.is_numeric and f.min is not None)
values = table[bounded.name].to_pylist()
values[7] = bounded.min - 1  # a reject with its reason, never a score
column = pa.array(values, table[bounded.name].type)
table = table.set_column(names.index(bounded.name), bounded.name, column)
table = table.append_column("application_id", pa.array([f"a{i}" for i in range(len(table))]))
pq.write_table(table, sys.argv[1])
"""
COMPARE = """
import json, sys
import pyarrow.compute as pc, pyarrow.parquet as pq

def read(folder, kind):
    return pq.read_table(f"{folder}/{kind}").sort_by("application_id")

expected, actual = sys.argv[1], sys.argv[2]
answer = {}
for kind in ("predictions", "rejects"):
    ours, theirs = read(expected, kind), read(actual, kind)
    answer[kind] = {"rows": theirs.num_rows, "equal": theirs.equals(ours)}
answer["versions"] = pc.unique(pq.read_table(f"{actual}/predictions")["model_version"]).to_pylist()
print(json.dumps(answer))
"""


def project_python(root: Path, script: str, *args: str) -> str:
    done = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-c", script, *args],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def compared(root: Path, expected: Path, actual: Path) -> dict:
    """Both runs' outputs row by row: equal predictions and rejects, the model versions written."""
    return json.loads(project_python(root, COMPARE, str(expected), str(actual)))


def writable(folder: Path) -> Path:
    """An output folder uid 10001 in the container can write to."""
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # the container user (uid 10001) writes into it
    return folder


def test_the_batch_image_scores_as_make_score_does_alone_and_on_a_dask_cluster(project, tmp_path):
    root, image, env = project["root"], project["image"], project["env"]
    (tmp_path / "in").mkdir()
    (tmp_path / "in").chmod(0o755)
    data = tmp_path / "in" / "rows.parquet"
    project_python(root, MAKE_INPUT, str(data))
    data.chmod(0o644)
    host = run_make(
        root, "score", f"DATA={data}", f"OUT={tmp_path / 'host'}", "SCORE_ARGS=--key application_id"
    )
    assert host.returncode == 0, host.stdout[-3000:] + host.stderr[-3000:]
    itself = compared(root, tmp_path / "host", tmp_path / "host")
    assert (itself["predictions"]["rows"], itself["rejects"]["rows"]) == (2999, 1)
    version = yaml.safe_load((root / "governance" / "registry.yaml").read_text())["models"][-1]["version"]

    mounts = ("--volume", f"{data.parent}:/in:ro", "--volume", f"{writable(tmp_path / 'out')}:/out")
    score = ("mlops", "score", "--data", "/in/rows.parquet", "--key", "application_id")
    alone = docker(env, "run", "--rm", *HARDENED, *mounts, image, *score, "--out", "/out/embedded")
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-3000:]
    embedded = compared(root, tmp_path / "host", tmp_path / "out" / "embedded")
    assert embedded["predictions"] == {"rows": 2999, "equal": True}, embedded
    assert embedded["rejects"] == {"rows": 1, "equal": True}, embedded
    assert embedded["versions"] == [version], "the rows name the registered version the image carries"

    # The cluster: a scheduler and a worker container, and the job handing them the rows. The worker
    # writes the parts, so it mounts the output as the job does (in a cluster: object storage).
    port, name = free_port(), f"batch-{uuid.uuid4().hex[:8]}"
    network = ("--network", "host")
    started = [
        docker(env, "run", "--detach", "--name", f"{name}-scheduler", *HARDENED, *network, image,
               "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"),
        docker(env, "run", "--detach", "--name", f"{name}-worker", *HARDENED, *network, *mounts, image,
               "dask", "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard"),
    ]  # fmt: skip
    try:
        assert all(run.returncode == 0 for run in started), [run.stderr for run in started]
        address = ("--env", f"DASK_SCHEDULER_ADDRESS=tcp://127.0.0.1:{port}")
        job = docker(
            env, "run", "--rm", *HARDENED, *network, *mounts, *address, image, *score, "--out", "/out/dask"
        )
        logs = [
            docker(env, "logs", "--tail", "30", f"{name}-{role}").stderr for role in ("scheduler", "worker")
        ]
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:] + "\n".join(logs)
        assert f"tcp://127.0.0.1:{port}" in job.stdout + job.stderr, "the job did not score on the cluster"
        on_dask = compared(root, tmp_path / "host", tmp_path / "out" / "dask")
        assert on_dask["predictions"] == {"rows": 2999, "equal": True}, on_dask
        assert on_dask["rejects"] == {"rows": 1, "equal": True}, on_dask
    finally:
        for role in ("scheduler", "worker"):
            docker(env, "rm", "--force", f"{name}-{role}")


def test_the_pushed_batch_image_is_what_promotion_pins_in_deploy_batch(project, tmp_path):
    """cd.yml's batch steps (`make image-push-batch`, then `make pin-staging`) and `make promote`:
    deploy/batch ends up pinning the digest the registry holds, of the registered version."""
    root, env, tag = project["root"], project["env"], project["tag"]
    version = yaml.safe_load((root / "governance" / "registry.yaml").read_text())["models"][-1]["version"]
    podman = "podman" in env.get("DOCKER_HOST", "")
    registry = RegistryStandIn(tmp_path / "registry")
    host = registry.start(print, "podman" if podman else "docker", project_env(**env))
    target = f"{host}/acme/loan-default-model-batch"
    # The podman CLI reads the stand-in's registries.conf (plain HTTP on loopback); the API does not.
    push_env = {**env, **registry.podman_env(), "DOCKER": "podman"} if podman else env
    try:
        assert docker(env, "tag", project["image"], f"{target}:{tag}").returncode == 0
        pushed = run_make(root, "image-push-batch", f"BATCH_IMAGE={target}", f"TAG={tag}", **push_env)
        assert pushed.returncode == 0, pushed.stdout[-3000:] + pushed.stderr[-3000:]
        record = json.loads((root / "artifacts" / "image-batch.json").read_text())
        assert record["model_version"] == version, "the batch image carries its model's version label"
        assert registry.has_manifest("acme/loan-default-model-batch", record["digest"]), record
    finally:
        registry.stop()
        docker(env, "image", "rm", f"{target}:{tag}")
    # The serving image's record, as `make image-push` writes it (the demo pushes a real one).
    serving = {"digest": "sha256:" + "5" * 64, "model_version": version, "reference": "r@sha256:" + "5" * 64}
    (root / "artifacts" / "image.json").write_text(json.dumps(serving))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "--message", "baked"]):
        subprocess.run([*git, *command], cwd=root, check=True, capture_output=True)
    for target_and_args in (("pin-staging",), ("promote", f"VERSION={version}")):
        staged = run_make(root, *target_and_args)
        assert staged.returncode == 0, staged.stdout[-3000:] + staged.stderr[-3000:]
    kustomization = (root / "deploy" / "batch" / "kustomization.yaml").read_text()
    (image,) = yaml.safe_load(kustomization)["images"]
    assert image["digest"] == record["digest"], "deploy/batch pins the pushed batch image"
    pull_request = (root / "reports" / "gitops" / "production.md").read_text()
    assert re.search(r"^- `deploy/batch/kustomization.yaml`$", pull_request, re.M), pull_request
