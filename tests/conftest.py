"""Shared helpers for baking the template in tests."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEMPLATE = ROOT / "{{cookiecutter.project_slug}}"
COOKIECUTTER_JSON = json.loads((ROOT / "cookiecutter.json").read_text())
# GitHub Actions expressions and Argo Rollouts' analysis arguments (deploy/components/canary)
# are the legitimate double braces in a baked project.
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
ARGO_ROLLOUTS_ARGUMENT = re.compile(r"\{\{args\.[a-z0-9-]+\}\}")
# `}}` alone also closes nested dict literals, and `%}` ends f-string formats like
# `{share:.1%}`; a leftover Jinja tag still shows by its opening `{{`, `{%` or `{#`,
# or as ` }}` with its customary space.
JINJA_LEFTOVER = re.compile(r"\{\{|\s\}\}|\{%|\{#")


def tool(name: str) -> str:
    """A tool from the template's lock (next to this interpreter), else from PATH; fail loudly."""
    beside = BIN / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it is in requirements/template.txt, run `make install`")
    return found


def choice_options() -> dict[str, list[str]]:
    """The prompts that offer a fixed list of choices, read from cookiecutter.json."""
    return {
        key: value
        for key, value in COOKIECUTTER_JSON.items()
        if isinstance(value, list) and not key.startswith("_")
    }


def rotated_matrix() -> list[dict[str, str]]:
    """Every value of every choice appears at least once; independent choices rotate together.

    Combination i takes choice ``i mod len`` of each option, so the matrix has as many
    entries as the longest choice list instead of the full cartesian product.
    """
    options = choice_options()
    width = max(len(values) for values in options.values())
    return [{key: values[i % len(values)] for key, values in options.items()} for i in range(width)]


def default_combination() -> dict[str, str]:
    """The choices `cookiecutter --no-input` takes: the first of each list."""
    return {key: values[0] for key, values in choice_options().items()}


def covering_matrix(
    ignore: tuple[str, ...] = (), already_run: tuple[dict[str, str], ...] = ()
) -> list[dict[str, str]]:
    """The first combinations of `rotated_matrix` that, with `already_run`, cover every value of
    every choice.

    Choices in `ignore` change no code path the baked project's own tests exercise (the licence
    only decides a LICENSE file, which the bake tests check), so they do not earn a whole run;
    combinations in `already_run` have their checks run by another test.
    """
    kept: list[dict[str, str]] = []
    for combination in rotated_matrix():
        seen = {(key, value) for earlier in (*already_run, *kept) for key, value in earlier.items()}
        if any((key, value) not in seen for key, value in combination.items() if key not in ignore):
            kept.append(combination)
    return kept


def write_user_csv(path: Path, rows: int = 400, seed: int = 7) -> Path:
    """A small binary-classification CSV standing in for a user's own data file."""
    generator = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tenure_months", "monthly_spend", "plan", "region", "gender", "churned"])
        for _ in range(rows):
            tenure = generator.randint(0, 72)
            spend = round(generator.uniform(10, 150), 2)
            plan = generator.choice(["basic", "plus", "premium"])
            churn_score = 0.8 - tenure / 60 + (0.3 if plan == "basic" else 0) + generator.gauss(0, 0.4)
            writer.writerow(
                [
                    tenure,
                    spend,
                    plan,
                    generator.choice(["north", "south"]),
                    generator.choice(["female", "male"]),
                    int(churn_score > 0.5),
                ]
            )
    return path


@pytest.fixture(scope="session")
def user_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_user_csv(tmp_path_factory.mktemp("user-data") / "churn.csv")


@dataclass(frozen=True)
class TaskFile:
    """A real dataset as a team's own file: the rows the project gets, and unseen rows kept back."""

    task: str
    path: Path
    target: str
    sensitive: str
    unseen: list[dict]


def _identifier(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def write_task_files(folder: Path, keep_back: float = 0.2, seed: int = 11) -> dict[str, TaskFile]:
    """scikit-learn's bundled datasets (offline) as CSV files, one per task, in the file's own labels.

    wine: three cultivars named as words (multiclass); diabetes: disease progression, a number
    (regression), with its sex column as a nullable sensitive attribute; breast cancer: the
    diagnosis as the words malignant/benign (binary, no 0/1 anywhere). A share of each dataset's
    rows is kept back, never trained on, to check what the served model answers against the truth.
    """
    from sklearn import datasets

    rng = random.Random(seed)
    wine, diabetes, cancer = (
        datasets.load_wine(),
        datasets.load_diabetes(scaled=False),
        datasets.load_breast_cancer(),
    )
    cultivars = ["barolo", "grignolino", "barbera"]
    sex_column = diabetes.feature_names.index("sex")
    tables = {
        "multiclass_classification": (
            "cultivar",
            "",
            [_identifier(name) for name in wine.feature_names],
            [[*row, cultivars[label]] for row, label in zip(wine.data.tolist(), wine.target, strict=True)],
        ),
        "regression": (
            "progression",
            "sex",
            [name for name in diabetes.feature_names if name != "sex"],
            [
                [
                    *(value for index, value in enumerate(row) if index != sex_column),
                    round(float(target), 1),
                    "" if rng.random() < 0.05 else f"group_{int(row[sex_column])}",
                ]
                for row, target in zip(diabetes.data.tolist(), diabetes.target, strict=True)
            ],
        ),
        "binary_classification": (
            "diagnosis",
            "",
            [_identifier(name) for name in cancer.feature_names],
            [
                [*row, ["malignant", "benign"][label]]
                for row, label in zip(cancer.data.tolist(), cancer.target, strict=True)
            ],
        ),
    }
    files = {}
    for task, (target, sensitive, features, rows) in tables.items():
        header = [*features, target, *([sensitive] if sensitive else [])]
        rng.shuffle(rows)
        cut = int(len(rows) * (1 - keep_back))
        path = folder / f"{task}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows[:cut])
        unseen = [dict(zip(header, row, strict=True)) for row in rows[cut:]]
        files[task] = TaskFile(task, path, target, sensitive, unseen)
    return files


@pytest.fixture(scope="session")
def task_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TaskFile]:
    return write_task_files(tmp_path_factory.mktemp("task-data"))


def complete(combination: dict[str, str], task_files: dict[str, TaskFile]) -> dict[str, str]:
    """Fill in what a combination needs to be valid (a file source needs a file of its task)."""
    context = dict(combination)
    if context.get("data_source") == "file":
        chosen = task_files[context.get("task", "binary_classification")]
        context.update(
            data_path=str(chosen.path), target_column=chosen.target, sensitive_attribute=chosen.sensitive
        )
    return context


def baked_files(project: Path) -> set[str]:
    return {
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


# The project's own document templates (model cards, reports) are Jinja on purpose: cookiecutter
# copies them verbatim (`_copy_without_render`), and the project renders them.
DOCUMENT_TEMPLATES = "governance/templates/"


def jinja_leftovers(project: Path) -> list[str]:
    """Files of a baked project that still hold template markup (outside GitHub expressions)."""
    leftovers = []
    for relative in sorted(baked_files(project)):
        if relative.startswith(DOCUMENT_TEMPLATES):
            continue
        try:
            text = (project / relative).read_text()
        except UnicodeDecodeError:
            continue
        if JINJA_LEFTOVER.search(ARGO_ROLLOUTS_ARGUMENT.sub("", GITHUB_EXPRESSION.sub("", text))):
            leftovers.append(relative)
    return leftovers


def free_port() -> int:
    """A TCP port free on the loopback interface now, for a service a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def project_env(**extra: str) -> dict[str, str]:
    """The environment a baked project's `make` runs in: the template venv's tools first (its uv
    shares one cache, so each install takes seconds), no GitHub or outer `make` variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "MAKE"))}
    env.update(GX_ANALYTICS_ENABLED="false", PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    if (BIN / "uv").exists():
        env["UV"] = str(BIN / "uv")
    return {**env, **extra}


LOCAL_BASE_IMAGE = "localhost/python-base:3.11"


@pytest.fixture(scope="module")
def engine() -> dict[str, str]:
    """Environment that reaches a Docker-API engine (and a base image it can build on).

    scripts/container-engine.sh is idempotent (.ci/run has already started the engine in CI);
    a missing engine fails the test, it is never skipped.
    """
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "container-engine.sh")], capture_output=True, text=True, timeout=900
    )
    assert found.returncode == 0, f"no container engine: {found.stderr[-3000:]}"
    env = dict(re.findall(r"^export (\w+)=(.*)$", found.stdout, re.M))
    if "podman" in env.get("DOCKER_HOST", ""):  # no registry behind podman here: build the base locally
        built = subprocess.run(
            ["bash", str(ROOT / "scripts" / "base-image.sh")],
            env={**os.environ, **env, "BASE_IMAGE": LOCAL_BASE_IMAGE},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert built.returncode == 0, f"no base image: {built.stderr[-3000:]}"
        env["BASE_IMAGE"] = LOCAL_BASE_IMAGE
    return env


def bake_defaults(folder: Path) -> Path:
    """The template baked with its defaults (no git repository) into `folder`; the project's path."""
    return Path(
        cookiecutter(str(ROOT), no_input=True, output_dir=str(folder), extra_context={"git_init": "no"})
    )


def run_make(
    project: Path, *targets: str, timeout: int = 2400, **env: str
) -> subprocess.CompletedProcess[str]:
    """`make <targets>` in a baked project, output captured (for the assertion message)."""
    return subprocess.run(
        ["make", *targets],
        cwd=project,
        env=project_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def call_json(url: str, body: object | None = None) -> tuple[int, dict]:
    """GET `url`, or POST `body` as JSON; the status and the decoded answer, an error's too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@contextmanager
def serving(project: Path, log: Path, **env: str) -> Iterator[str]:
    """`make serve` of a baked project on a free port, ready; yields its base URL, SIGTERM after.

    REST only unless `GRPC_PORT` is given: the default gRPC port is fixed, and services started
    side by side by parallel tests would collide on it.
    """
    port = free_port()
    environment = project_env(**{"PORT": str(port), "APP_ENV": "development", "GRPC_PORT": "", **env})
    with log.open("w") as handle:
        server = subprocess.Popen(
            ["make", "serve"],
            cwd=project,
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"make serve exited {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if call_json(f"{base}/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"make serve never turned ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


# The slow files, longest first (CI durations): with `pytest -n 2 --dist loadfile` a worker takes the
# next whole file when its queue runs low, so the two longest must start first, one on each worker
# (`--no-loadscope-reorder` keeps this order; xdist would order files by their number of tests).
LONGEST_FIRST = ("test_demo", "test_act", "test_baked_projects", "test_tasks", "test_oip_clients")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the tests longest file first (a stable sort: each file keeps its own order)."""
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))
