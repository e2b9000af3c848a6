"""Cached set-ups for the ML and governance tests: train once, reuse everywhere.

Training is the slow part of these tests, so each expensive result is built once per
test session (functools.cache keyed on pytest's session-wide tmp_path_factory) and shared
by the test modules that need it. Data and trees are kept small so the suite stays fast.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import onnx
import pandas as pd
import yaml

from data_pipelines import example, snapshot
from data_pipelines.example import EXAMPLE_CONTRACT, example_contract
from governance.core import policy as policy_file
from governance.core.contract import Contract
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.policy import PolicyError
from governance.core.tasks import (
    BINARY,
    DEFAULT_GROUP_METRIC,
    DEFAULT_PRIMARY,
    MULTICLASS,
    REGRESSION,
    higher_is_better,
)
from ml.estimator import FAMILIES
from ml.export import convert, metadata, stamp
from ml.features import model_frame
from ml.pipeline import train
from ml.train import Params, Split, fit, load_params, split
from tests.support import datasets

PROJECT = Path(__file__).resolve().parents[2]
ROWS = 2000
SEED = 7
# Small models keep each family's fit and conversion to about a second.
SMALL = {
    "linear": {"C": 1.0, "max_iter": 500},
    "random_forest": {"n_estimators": 25, "max_depth": 6, "min_samples_leaf": 5},
    "gradient_boosting": {"n_estimators": 30, "max_depth": 3, "learning_rate": 0.1},
}
SMALL_REGRESSION = {**SMALL, "linear": {"alpha": 1.0}}  # Ridge has no C / max_iter


def small_settings(task: str) -> dict[str, dict]:
    return SMALL_REGRESSION if task == REGRESSION else SMALL


def contract() -> Contract:
    """The example generator's contract: the tests hold whatever contract the project adopts."""
    return example_contract()


def small_params(family: str, task: str | None = None) -> Params:
    settings = small_settings(task or contract().task)
    return load_params(PROJECT / "ml" / "params.yaml").model_copy(
        update={"model_family": family, "estimators": {family: settings[family]}}
    )


@cache
def example_frame(rows: int = ROWS, seed: int = SEED) -> pd.DataFrame:
    return example.generate(rows, seed=seed)


@dataclass(frozen=True)
class Trained:
    family: str
    params: Params
    parts: Split
    pipeline: object
    frame: pd.DataFrame  # the test split, as the model sees it
    model: onnx.ModelProto
    content: bytes
    version: str
    contract: Contract


def _trained(family: str, terms: Contract, rows: pd.DataFrame) -> Trained:
    opset = policy_file.load(PROJECT / "governance" / "policy.yaml").onnx.opset
    params = small_params(family, terms.task)
    parts = split(rows, terms, params)
    pipeline = fit(parts.train, terms, params)
    model = convert(pipeline, terms, opset, params.model_name)
    content, version = stamp(
        model, metadata(params.model_name, family, terms, "0" * 64), "2024-01-31T00:00:00Z"
    )
    return Trained(
        family, params, parts, pipeline, model_frame(parts.test, terms), model, content, version, terms
    )


@cache
def trained(family: str) -> Trained:
    """One small model per family on the example data, exported at the policy's opset."""
    return _trained(family, contract(), example_frame())


@cache
def _task_data(task: str) -> datasets.TaskData:
    return datasets.TASK_DATASETS[task](Path(tempfile.mkdtemp(prefix=f"{task}-")))


def task_data(task: str) -> datasets.TaskData:
    """A real scikit-learn dataset of `task` with its contract (the same in a bake of any task)."""
    return _task_data(task)


@cache
def trained_task(task: str, family: str) -> Trained:
    """One small model per task and family on that task's real dataset (tests/support/datasets.py)."""
    data = task_data(task)
    return _trained(family, data.contract, data.frame)


def offered_families() -> list[str]:
    """Every family a baked project can be generated with (the template's cookiecutter.json choices)."""
    return sorted(FAMILIES)


def make_workspace(root: Path, family: str = "linear", with_snapshot: bool = True) -> Path:
    """A project-shaped folder with its own contract, policy, registry, params and example snapshot.

    Tests point the CLI at it with --root (or build `Paths(root)`), so they never touch the real
    project's registry.
    """
    for folder in ("governance", "ml", "data_pipelines", "monitoring"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for kept in ("data_pipelines/source.yaml", "monitoring/monitoring.yaml"):
        shutil.copy(PROJECT / kept, root / kept)
    contract_path = root / "data_pipelines" / "contract.yaml"
    contract_path.write_text(yaml.safe_dump(EXAMPLE_CONTRACT, sort_keys=False))
    policy_path = root / "governance" / "policy.yaml"
    shutil.copy(PROJECT / "governance" / "policy.yaml", policy_path)
    task = load_contract(contract_path).task
    try:
        policy_file.load(policy_path, task=task)
    except PolicyError:  # the example data is of another task than the project's policy
        task_policy(policy_path, task, bound=0.0)
    (root / "governance" / "registry.yaml").write_text("version: 1\nmodels: []\n")
    params = yaml.safe_load((PROJECT / "ml" / "params.yaml").read_text())
    params["model_family"] = family
    params["estimators"] = small_settings(load_contract(contract_path).task)
    (root / "ml" / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if with_snapshot:
        snapshot.create(
            example_frame(),
            {"kind": "example", "rows": ROWS, "seed": SEED},
            contract=load_contract(contract_path),
            root=root / "artifacts" / "snapshots",
        )
    return root


@cache
def _trained_workspace(base: Path) -> tuple[Path, str]:
    root = make_workspace(base / "ml-trained-workspace")
    report = train(Paths(root))
    if not report.passed:
        raise RuntimeError(f"the shared workspace's model failed its gates: {report.failures()}")
    return root, report.version


def trained_workspace(basetemp: Path) -> tuple[Path, str]:
    """A workspace where `train` has run once in this session (shared: copy it before changing it)."""
    return _trained_workspace(basetemp)


def copy_workspace(source: Path, target: Path) -> Path:
    """A private copy of the trained workspace, for tests that register or edit the policy."""
    shutil.copytree(source, target)
    return target


# Policy bounds each task's real dataset clears with the small models (held-out r2 of diabetes is
# about 0.45, the classifiers score above 0.9), so a failing gate means a broken stage.
TASK_BOUNDS = {BINARY: 0.9, MULTICLASS: 0.85, REGRESSION: 0.3}


def task_policy(path: Path, task: str, primary: str | None = None, bound: float | None = None) -> None:
    """Rewrite the policy at `path` for `task`: its default primary metric (or `primary`) and group metric.

    A lower-is-better `primary` gets a loose maximum; the task's default gets `bound` (default
    TASK_BOUNDS), any other higher-is-better metric a minimum of 0.
    """
    raw = yaml.safe_load(path.read_text())
    metric = primary or DEFAULT_PRIMARY[task]
    model = {key: value for key, value in raw["model"].items() if not key.endswith("_primary_metric")}
    model["primary_metric"] = metric
    if higher_is_better(metric):
        default = TASK_BOUNDS[task] if bound is None else bound
        model["min_primary_metric"] = default if metric == DEFAULT_PRIMARY[task] else 0.0
    else:
        model["max_primary_metric"] = 1e6
    raw["model"] = model
    raw["bias"]["metric"] = DEFAULT_GROUP_METRIC[task]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def make_task_workspace(root: Path, task: str, family: str = "linear", primary: str | None = None) -> Path:
    """A workspace whose contract, data and policy are `task`'s real dataset (works in any bake).

    The policy is the project's with the task's default primary metric and group metric (or
    `primary`, bounded on its side: a lower-is-better metric gets a loose maximum).
    """
    make_workspace(root, family, with_snapshot=False)
    data = task_data(task)
    contract_path = root / "data_pipelines" / "contract.yaml"
    shutil.copy(data.contract_path, contract_path)
    task_policy(root / "governance" / "policy.yaml", task, primary)
    params = yaml.safe_load((root / "ml" / "params.yaml").read_text())
    params["estimators"] = small_settings(task)
    (root / "ml" / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    snapshot.create(
        data.frame,
        {"kind": "sklearn", "dataset": data.name},
        contract=load_contract(contract_path),
        root=root / "artifacts" / "snapshots",
    )
    return root
