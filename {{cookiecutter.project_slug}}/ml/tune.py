"""`make tune`: an Optuna study over ml/search_space.yaml, written back into ml/params.yaml as a diff.

Each trial cross-validates the family params.yaml picks on the training split only (the held-out
split `make train` scores stays unseen) and is judged like a candidate: two objectives, the
policy's primary metric (in its own direction) and the bias gap (smaller is better), with the
policy's two model gates as constraints, so TPE learns to avoid infeasible regions and the
Pareto front shows the trade-off. The study lives in artifacts/mlflow/optuna.db next to the
tracking store: a second `make tune` resumes it. Each trial is a nested MLflow run under one
run per `make tune`.

Pruning: Optuna's intermediate-value pruners do not support multi-objective studies, so a trial
is pruned by the policy instead: after the second fold, a mean primary metric that already misses
the policy's minimum (or maximum) stops the trial; its partial folds are kept, as infeasible.

The chosen trial is the Pareto-optimal feasible trial with the best primary metric (ties: the
smaller bias gap). Its values are written into params.yaml (comments kept; floats to 6
significant digits) and the change is printed as a unified diff for review.
"""

from __future__ import annotations

import difflib
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from governance.core import progress
from governance.core.errors import CheckFailed, InputError
from governance.core.paths import Paths
from governance.core.records import Record, parse, read_yaml, write_atomically
from governance.core.tasks import higher_is_better
from ml import tracking
from ml.evaluate import evaluate
from ml.features import model_frame
from ml.gates import bias_gate, primary_gate
from ml.pipeline import Inputs, load_inputs, split_data
from ml.train import Params, fit, labels

FOLDS = 3
PRUNE_AFTER_FOLDS = 2


class SearchSpaceError(InputError):
    """ml/search_space.yaml breaks a rule; the message names the family, setting, rule and value."""


class Dimension(Record):
    """One tuned setting: a numeric range, or a list of choices."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Dimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("type categorical needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"type {self.type} needs low < high (got low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got low={self.low})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self

    def suggest(self, trial: Any, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class SearchSpaces(Record):
    families: dict[str, dict[str, Dimension]]


def load_space(path: Path, family: str) -> dict[str, Dimension]:
    """The family's search space, checked (an unknown setting type or empty range is named)."""
    raw = read_yaml(path, "search space file", SearchSpaceError)
    spaces = parse(SearchSpaces, {"families": raw}, str(path), SearchSpaceError).families
    space = spaces.get(family)
    if not space:
        raise SearchSpaceError(
            f"{path}: has no search space for model_family {family!r} (families: {sorted(spaces)})"
        )
    if "random_state" in space:
        raise SearchSpaceError(f"{path}: field '{family}.random_state' is not tunable: the seed sets it")
    return space


@dataclass(frozen=True)
class Score:
    """A trial's mean over its folds, and whether the policy's model gates accept it."""

    primary: float
    gap: float
    constraints: tuple[float, float]  # <= 0 means the gate passes (Optuna's convention)

    @property
    def feasible(self) -> bool:
        return all(value <= 0 for value in self.constraints)


@dataclass
class Study:
    """What one `make tune` works on: the inputs, the folds, the space, and where runs go."""

    paths: Paths
    inputs: Inputs
    space: dict[str, Dimension]
    folds: list[tuple[pd.DataFrame, pd.DataFrame]]
    runs: Runs | None
    lock: threading.Lock = field(default_factory=threading.Lock)


def cv_folds(inputs: Inputs) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Folds of the training split (stratified for classes); the held-out split is never touched."""
    from sklearn.model_selection import KFold, StratifiedKFold

    train = split_data(inputs).split.train.reset_index(drop=True)
    seed = inputs.params.seed
    if inputs.contract.target.is_classification:
        splitter: Any = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
        pieces = splitter.split(train, labels(train, inputs.contract))
    else:
        pieces = KFold(FOLDS, shuffle=True, random_state=seed).split(train)
    return [(train.iloc[fit_rows], train.iloc[val_rows]) for fit_rows, val_rows in pieces]


def with_settings(params: Params, settings: dict[str, Any]) -> Params:
    estimators = {**params.estimators, params.model_family: {**params.estimator, **settings}}
    return params.model_copy(update={"estimators": estimators})


def score_fold(inputs: Inputs, params: Params, rows: pd.DataFrame, held: pd.DataFrame) -> tuple[float, float]:
    """The primary metric and bias gap of one fold's model on the fold's held-out rows."""
    contract, policy = inputs.contract, inputs.policy
    pipeline = fit(rows, contract, params)
    frame = model_frame(held, contract)
    proba = pipeline.predict_proba(frame) if contract.target.is_classification else None
    metrics, bias, _ = evaluate(
        held, labels(held, contract), pipeline.predict(frame), proba, contract, policy.bias.metric
    )
    primary = metrics.get(policy.model.primary_metric)
    gap = bias.gaps.get(policy.bias.metric) if bias.sensitive_attribute else 0.0
    return float("nan") if primary is None else float(primary), 0.0 if gap is None else float(gap)


def judge(inputs: Inputs, primaries: list[float], gaps: list[float]) -> Score:
    """The folds' means, held to the policy's primary-metric and bias gates."""
    from governance.core.records import Bias

    policy = inputs.policy
    primary, gap = float(np.mean(primaries)), float(np.mean(gaps))
    metric_gate = primary_gate(policy, {policy.model.primary_metric: primary})
    bias = Bias(
        sensitive_attribute=inputs.contract.sensitive.name if inputs.contract.sensitive else None,
        metric=policy.bias.metric,
        gaps={policy.bias.metric: gap},
    )
    gap_gate = bias_gate(policy, bias)
    violations = [
        -gate.margin if gate.margin is not None and np.isfinite(gate.margin) else float(not gate.passed)
        for gate in (metric_gate, gap_gate)
    ]
    return Score(primary, gap, (violations[0], violations[1]))


def objective(study: Study, trial: Any) -> tuple[float, float]:
    """Cross-validate one point of the space; pruned early when the policy would refuse it anyway."""
    import optuna

    settings = {name: dimension.suggest(trial, name) for name, dimension in study.space.items()}
    params = with_settings(study.inputs.params, settings)
    primaries: list[float] = []
    gaps: list[float] = []
    for index, (rows, held) in enumerate(study.folds, start=1):
        primary, gap = score_fold(study.inputs, params, rows, held)
        primaries.append(primary)
        gaps.append(gap)
        score = judge(study.inputs, primaries, gaps)
        if index >= PRUNE_AFTER_FOLDS and index < len(study.folds) and score.constraints[0] > 0:
            settle(trial, score, index)
            record_trial(study, trial, settings, score, "pruned")
            raise optuna.TrialPruned(f"mean {study.inputs.policy.model.primary_metric} misses the policy")
    settle(trial, score, len(study.folds))
    record_trial(study, trial, settings, score, "complete")
    return score.primary, score.gap


def settle(trial: Any, score: Score, folds: int) -> None:
    """The policy's verdict as Optuna constraints (TPE samples away from infeasible regions)."""
    trial.set_user_attr("folds", folds)
    for name, value in zip(("primary_metric", "bias_gap"), score.constraints, strict=True):
        trial.set_constraint(name, value)


def constraints(trial: Any) -> list[float]:
    """A finished trial's constraint values; a trial that failed before being judged is infeasible."""
    return list(trial.constraints.values()) or [1.0]


# --- MLflow: one parent run per `make tune`, one nested run per trial ----------------------------


@dataclass
class Runs:
    uri: str
    experiment: str
    parent_run_id: str
    local: str
    artifacts: str


def open_runs(paths: Paths, inputs: Inputs, study_name: str) -> Runs | None:
    """The parent run in the team's store (else, with one warning, the local one); None when off."""
    if not tracking.enabled():
        return None
    tracking.quiet_environment()
    paths.tracking.mkdir(parents=True, exist_ok=True)
    local, target = tracking.local_uri(paths), tracking.target_uri(paths)
    experiment = tracking.experiment_name(inputs.params.model_name)
    job = tracking.Job(
        tracking_uri=target,
        local_uri=local,
        local_artifacts=tracking.local_artifacts(paths),
        experiment=experiment,
        run_name=f"tune {study_name}",
        params={"study": study_name, "model_family": inputs.params.model_family, "folds": str(FOLDS)},
        metrics={},
        tags={**tracking.git_tags(paths.root), "kind": "tuning"},
        artifacts=[],
    )
    answer = tracking.record_run(job)
    if answer.get("warning"):
        tracking.warn(answer["warning"])
    uri = local if answer.get("fallback_from") else target
    return Runs(uri, experiment, answer["run_id"], local, tracking.local_artifacts(paths))


def record_trial(study: Study, trial: Any, settings: dict[str, Any], score: Score, state: str) -> None:
    """The trial's nested run: its settings, fold means and whether the policy would accept it."""
    if study.runs is None:
        return
    runs = study.runs
    job = tracking.Job(
        tracking_uri=runs.uri,
        local_uri=runs.local,
        local_artifacts=runs.artifacts,
        experiment=runs.experiment,
        run_name=f"trial {trial.number}",
        params={f"estimator.{name}": str(value) for name, value in settings.items()},
        metrics={
            study.inputs.policy.model.primary_metric: score.primary,
            f"bias_gap.{study.inputs.policy.bias.metric}": score.gap,
            "feasible": float(score.feasible),
        },
        tags={"optuna.trial": str(trial.number), "optuna.state": state},
        artifacts=[],
    )
    with study.lock:  # MLflow's SQLite store is shared by the --jobs threads
        try:
            tracking.write_run(job, runs.uri, parent_run_id=runs.parent_run_id)
        except Exception as error:  # tracking never fails tuning
            tracking.warn(f"trial {trial.number} was not tracked: {error}")


# --- choosing, writing back, reporting ----------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the study ended with, for the command line and the report."""

    study_name: str
    trials: list[Any]
    front: list[Any]
    chosen: Any | None
    diff: str
    report: Path
    picture: Path


def pareto_front(trials: list[Any], maximise_primary: bool) -> list[Any]:
    """The feasible complete trials no other feasible trial beats on both objectives."""
    sign = 1.0 if maximise_primary else -1.0
    feasible = [t for t in trials if t.values is not None and all(v <= 0 for v in constraints(t))]

    def beats(a: Any, b: Any) -> bool:
        better_or_equal = sign * a.values[0] >= sign * b.values[0] and a.values[1] <= b.values[1]
        return better_or_equal and (a.values[0] != b.values[0] or a.values[1] != b.values[1])

    return [t for t in feasible if not any(beats(other, t) for other in feasible)]


def choose(front: list[Any], maximise_primary: bool) -> Any | None:
    """The documented rule: best primary metric on the front, then the smaller bias gap."""
    if not front:
        return None
    sign = -1.0 if maximise_primary else 1.0
    return min(front, key=lambda t: (sign * t.values[0], t.values[1]))


def rounded(value: Any) -> Any:
    return float(f"{value:.6g}") if isinstance(value, float) else value


def write_params(path: Path, family: str, settings: dict[str, Any], name: str = "ml/params.yaml") -> str:
    """Put the chosen settings under estimators.<family> (comments kept); returns the unified diff."""
    from ruamel.yaml import YAML

    before = path.read_text()
    yaml = YAML()  # round-trip mode: comments, order and layout survive
    document = yaml.load(before)
    section = document["estimators"][family]
    for key, value in settings.items():
        section[key] = rounded(value)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    after = buffer.getvalue()
    if after != before:
        write_atomically(path, after)
    lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{name}", f"b/{name}")
    return "".join(lines)


def draw_front(trials: list[Any], front: list[Any], chosen: Any | None, study: Study, out: Path) -> Path:
    """The Pareto picture: every finished trial, the feasible front, the chosen point, the policy's limits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policy = study.inputs.policy
    metric, gap_metric = policy.model.primary_metric, policy.bias.metric
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    done = [t for t in trials if t.values is not None]
    feasible = [t for t in done if all(v <= 0 for v in constraints(t))]
    infeasible = [t for t in done if t not in feasible]
    if infeasible:
        axes.scatter(*zip(*[t.values for t in infeasible], strict=True), marker="x", c="#b0b0b0",
                     label="infeasible (breaks a policy gate)")  # fmt: skip
    if feasible:
        axes.scatter(*zip(*[t.values for t in feasible], strict=True), c="#4477aa", label="feasible")
    if front:
        ordered = sorted(front, key=lambda t: t.values[0])
        points = zip(*[t.values for t in ordered], strict=True)
        axes.plot(*points, c="#cc6677", marker="o", label="Pareto front")
    if chosen is not None:
        axes.scatter([chosen.values[0]], [chosen.values[1]], marker="*", s=260, c="#ddaa33",
                     edgecolors="black", zorder=5, label=f"chosen (trial {chosen.number})")  # fmt: skip
    axes.axvline(policy.model.threshold, ls="--", c="#888888", lw=1)
    axes.axhline(policy.bias.max_gap, ls=":", c="#888888", lw=1)
    axes.set_xlabel(f"{metric} (cross-validated, policy limit dashed)")
    axes.set_ylabel(f"{gap_metric} gap (policy maximum dotted)")
    axes.set_title(f"make tune: {len(done)} trials")
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out


def write_report(study: Study, outcome_parts: dict[str, Any], out: Path) -> Path:
    from governance.documents import render

    out.write_text(render("tuning_report.html.j2", policy=study.inputs.policy, **outcome_parts))
    return out


def progress_line(study: Study, total: int | None) -> Any:
    """One line per finished trial: its number, settings, scores and verdict."""
    metric = study.inputs.policy.model.primary_metric

    def report(optuna_study: Any, trial: Any) -> None:
        settings = ", ".join(f"{k}={rounded(v)}" for k, v in trial.params.items())
        verdict = "feasible" if all(v <= 0 for v in constraints(trial)) else "infeasible"
        if trial.values is None:
            scores = f"pruned after {trial.user_attrs.get('folds', '?')} folds"
        else:
            scores = f"{metric} {trial.values[0]:.4f}, bias gap {trial.values[1]:.4f}"
        of = f"/{total}" if total else ""
        progress.note(f"trial {trial.number} ({trial.number + 1}{of}) [{settings}]: {scores} ({verdict})")

    return report


def tune(
    paths: Paths,
    trials: int | None = 20,
    timeout: float | None = None,
    jobs: int = 1,
    snapshot_ref: str | None = None,
) -> Outcome:
    """Run (or resume) the study, write the chosen settings into params.yaml, draw and report."""
    import logging

    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    inputs = load_inputs(paths, snapshot_ref)
    family = inputs.params.model_family
    space = load_space(paths.search_space, family)
    study_name = f"{inputs.params.model_name}-{family}"
    with progress.step(f"preparing {FOLDS} cross-validation folds"):
        folds = cv_folds(inputs)
    runs = open_runs(paths, inputs, study_name)
    work = Study(paths, inputs, space, folds, runs)
    maximise = higher_is_better(inputs.policy.model.primary_metric)
    paths.tracking.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(paths.tracking / 'optuna.db').resolve()}"
    sampler = optuna.samplers.TPESampler(seed=inputs.params.seed)
    directions = ["maximize" if maximise else "minimize", "minimize"]
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except ValueError as error:
        raise InputError(f"study {study_name} in {storage} cannot be resumed: {error}") from None
    earlier = len(study.trials)
    title = f"tuning {family}: {trials or 'unlimited'} trial(s), {jobs} job(s), {earlier} done before"
    with progress.step(title):
        study.optimize(
            lambda trial: objective(work, trial),
            n_trials=trials,
            timeout=timeout,
            n_jobs=jobs,
            callbacks=[progress_line(work, (earlier + trials) if trials else None)],
            catch=(),
        )
    finished = [t for t in study.trials if t.state.is_finished()]
    front = pareto_front(finished, maximise)
    chosen = choose(front, maximise)
    diff = write_params(paths.params, family, chosen.params) if chosen is not None else ""
    out = paths.tuning_reports
    picture = draw_front(finished, front, chosen, work, out / "pareto.png")
    report = write_report(
        work,
        {
            "study_name": study_name,
            "family": family,
            "trials": finished,
            "front": {t.number for t in front},
            "chosen": chosen,
            "diff": diff,
            "picture": picture.name,
            "feasible": {t.number for t in finished if all(v <= 0 for v in constraints(t))},
            "run": runs,
        },
        out / "index.html",
    )
    if runs is not None:
        for file in (picture, report):
            try:
                tracking.client(runs.uri).log_artifact(runs.parent_run_id, str(file))
            except Exception as error:  # tracking never fails tuning
                tracking.warn(f"could not add {file.name} to run {runs.parent_run_id}: {error}")
        tracking.client(runs.uri).set_terminated(runs.parent_run_id, "FINISHED")
    outcome = Outcome(study_name, finished, front, chosen, diff, report, picture)
    if chosen is None:
        raise CheckFailed(
            f"no trial of study {study_name} met the policy's model gates; params.yaml is unchanged "
            f"(report: {paths.relative(report)})"
        )
    return outcome
