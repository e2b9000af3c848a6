"""A seeded, network-free generator of consumer-loan applications, for demos and tests.

The data is synthetic but shaped like the real thing, so every later stage has something
honest to chew on: mixed numeric and categorical features with plausible correlations,
values missing where real applications miss them, a noisy label that a linear model can
learn only partly, and a sensitive attribute (``sex``) that is not a model input but leaks
into income, so bias metrics measure something without the plain model breaking the policy.

One dataset per supervised task, from the same applicants and the same latent risk, so every
task is demonstrated offline: ``defaulted`` (binary, 0/1: did the loan default within a year),
``risk_grade`` (multiclass, the words low/medium/high an underwriter would give) and
``interest_rate`` (regression, the yearly percent offered). Which one a frame carries follows
the task of the project's contract (data_pipelines/contract.yaml), or the ``task`` argument.

Two knobs let monitoring and retraining be exercised without real production traffic:
``covariate_drift`` moves the inputs (an economic downturn: lower incomes, bigger loans,
more unemployment, a different regional mix) and ``concept_drift`` changes how the label
depends on the inputs. Both are strengths from 0 (none) to 1 (strong). All random draws
happen in the same order whatever the knobs say, so drifted and undrifted windows with the
same seed differ only by the drift, and every value stays inside the contract's ranges and
categories, so drifted windows still pass validation and the drift tests see real shifts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import numbers
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from governance.core.contract import Contract, parse_contract
from governance.core.paths import PATHS
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION, TASKS

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
MEAN_SECONDS_BETWEEN_APPLICATIONS = 240.0  # about 360 applications a day

EMPLOYMENT = ("salaried", "self_employed", "unemployed", "retired")
REGIONS = ("north", "south", "east", "west")
PURPOSES = ("car", "home", "education", "business", "other")
SEXES = ("female", "male")
GRADES = ("low", "medium", "high")
GRADE_CUTS = (-1.5, -0.1)  # latent risk below the first: low; above the second: high
RATE_RANGE = (2.5, 29.9)  # yearly percent, the range a consumer loan is priced in

# The label of each task, in the contract's own format (binary keeps its original form, so the
# example schema, and the digest of every snapshot made against it, is unchanged).
TARGETS: dict[str, dict] = {
    BINARY: {"name": "defaulted", "dtype": "int64", "classes": [0, 1], "positive_class": 1},
    MULTICLASS: {"name": "risk_grade", "task": MULTICLASS, "dtype": "string", "classes": list(GRADES)},
    REGRESSION: {"name": "interest_rate", "task": REGRESSION, "dtype": "float64"},
}


def project_task(path: Path | None = None) -> str:
    """The task the project's contract declares (binary when it declares none or cannot be read).

    Only ``target.task`` is read, as text: the example follows the task a project was baked
    with, and stays usable while a half-edited contract would not load.
    """
    try:
        raw = yaml.safe_load((path or PATHS.contract).read_text())
    except (OSError, yaml.YAMLError):
        return BINARY
    target = raw.get("target") if isinstance(raw, dict) else None
    task = target.get("task") if isinstance(target, dict) else None
    return task if task in TASKS else BINARY


def _task(task: str | None) -> str:
    task = project_task() if task is None else task
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)} (got {task!r})")
    return task


# The inputs this generator promises, in the data contract's own format (the target is per task).
_INPUTS: dict = {
    "sensitive_attribute": {"name": "sex", "categories": list(SEXES), "nullable": False},
    "features": [
        {"name": "age", "kind": "numeric", "dtype": "int64", "min": 18, "max": 100, "nullable": False},
        {"name": "income", "kind": "numeric", "dtype": "float64", "min": 0, "max": 1000000, "nullable": True},
        {
            "name": "loan_amount",
            "kind": "numeric",
            "dtype": "float64",
            "min": 500,
            "max": 100000,
            "nullable": False,
        },
        {
            "name": "debt_to_income",
            "kind": "numeric",
            "dtype": "float64",
            "min": 0,
            "max": 5,
            "nullable": False,
        },
        {
            "name": "credit_history_months",
            "kind": "numeric",
            "dtype": "int64",
            "min": 0,
            "max": 900,
            "nullable": True,
        },
        {
            "name": "open_accounts",
            "kind": "numeric",
            "dtype": "int64",
            "min": 0,
            "max": 60,
            "nullable": False,
        },
        {
            "name": "employment_type",
            "kind": "categorical",
            "dtype": "string",
            "categories": list(EMPLOYMENT),
            "nullable": False,
        },
        {
            "name": "region",
            "kind": "categorical",
            "dtype": "string",
            "categories": list(REGIONS),
            "nullable": False,
        },
        {
            "name": "loan_purpose",
            "kind": "categorical",
            "dtype": "string",
            "categories": list(PURPOSES),
            "nullable": True,
        },
    ],
}


def example_schema(task: str | None = None) -> dict:
    """The generator's schema for ``task`` (default: the project's), in the contract's format."""
    target = TARGETS[_task(task)]
    return {"version": 1, "dataset": "loan_applications", "target": dict(target), **copy.deepcopy(_INPUTS)}


# The schema of the project's task: the contract a project baked with the example data starts
# from; tests use it directly so that they hold whatever contract a project later adopts.
EXAMPLE_CONTRACT: dict = example_schema()


def example_contract(task: str | None = None) -> Contract:
    """The generator's schema as a checked Contract (its features independent of contract.yaml).

    Its digest hashes the schema itself, so snapshots made against it carry a stable lineage.
    """
    schema = example_schema(task)
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    return parse_contract(schema, digest=hashlib.sha256(canonical).hexdigest())


def _bounds(name: str) -> tuple[float, float]:
    feature = next(item for item in _INPUTS["features"] if item["name"] == name)
    return feature["min"], feature["max"]


def _check_strength(name: str, value: float) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number from 0 (none) to 1 (strong) (got {value!r})")
    return float(value)


def _pick(uniform: np.ndarray, weights: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """Inverse-CDF sampling with one pre-drawn uniform per row, so drift only moves the cut points.

    ``weights`` is one row of (unnormalised) weights per row of data, or one row shared by all.
    """
    weights = np.broadcast_to(weights, (len(uniform), len(labels)))
    cumulative = np.cumsum(weights, axis=1)
    cumulative = cumulative / cumulative[:, -1:]
    index = np.minimum((uniform[:, None] > cumulative).sum(axis=1), len(labels) - 1)
    return np.asarray(labels, dtype=object)[index]


def generate(
    n_rows: int,
    seed: int = 0,
    covariate_drift: float = 0.0,
    concept_drift: float = 0.0,
    start: datetime | None = None,
    task: str | None = None,
) -> pd.DataFrame:
    """Return ``n_rows`` applications with the contract's columns plus ``event_time`` (UTC).

    The same arguments always give the same frame. ``start`` is when the window opens
    (default 2024-01-01 UTC); applications then arrive as a Poisson process. ``task`` picks
    the label (default: the task of the project's contract); the inputs are the same for all.
    """
    if not isinstance(n_rows, numbers.Integral) or isinstance(n_rows, bool) or n_rows < 1:
        raise ValueError(f"n_rows must be a positive integer (got {n_rows!r})")
    n = int(n_rows)
    shift = _check_strength("covariate_drift", covariate_drift)
    concept = _check_strength("concept_drift", concept_drift)
    task = _task(task)
    start = start or DEFAULT_START
    if start.tzinfo is None:
        raise ValueError(f"start must be timezone-aware, e.g. datetime(..., tzinfo=UTC) (got {start!r})")
    rng = np.random.default_rng(seed)

    # Every draw happens here, in a fixed order, before any knob is applied.
    u_sex, u_region, u_employment, u_purpose = rng.random((4, n))
    z_age, z_income, z_loan, z_history = rng.standard_normal((4, n))
    g_debt = rng.gamma(2.0, 0.09, n)
    u_accounts = rng.random(n)
    u_missing_income, u_missing_history, u_missing_purpose = rng.random((3, n))
    z_label_noise = rng.logistic(0.0, 1.0, n)
    gaps = rng.exponential(MEAN_SECONDS_BETWEEN_APPLICATIONS, n)
    z_rate = rng.standard_normal(n)  # drawn last, so the binary label's stream is as it always was

    sex = _pick(u_sex, np.array([0.49, 0.51]), SEXES)
    female = sex == "female"
    region_weights = np.array([0.27, 0.31, 0.20, 0.22]) + shift * np.array([-0.10, 0.15, 0.05, -0.10])
    region = _pick(u_region, region_weights, REGIONS)

    # Applicants are adults, and few apply past 85 (well inside the contract's limit).
    age = np.clip(np.round(41.0 + 3.0 * shift + 13.0 * z_age), _bounds("age")[0], 85).astype(np.int64)

    # Employment depends on age: retirement after 60, more unemployment when young or in a downturn.
    older = np.clip((age - 58) / 10.0, 0.0, 1.0)
    young = np.clip((30 - age) / 12.0, 0.0, 1.0)
    employment_weights = np.stack(
        [
            0.66 * (1 - older) + 0.05,
            np.full(n, 0.15),
            0.06 + 0.08 * young + 0.10 * shift,
            0.02 + 0.75 * older,
        ],
        axis=1,
    )
    employment = _pick(u_employment, employment_weights, EMPLOYMENT)

    base_income = np.select(
        [employment == "salaried", employment == "self_employed", employment == "unemployed"],
        [52000.0, 56000.0, 13000.0],
        default=31000.0,
    )
    spread = np.where(employment == "self_employed", 0.65, 0.42)
    career = 1.0 + 0.012 * np.clip(age - 22, 0, 28) - 0.006 * np.clip(age - 50, 0, 40)
    region_factor = np.select([region == "west", region == "south"], [1.15, 0.9], default=1.0)
    # The only way sex enters the data: a pay gap, which the label inherits through income.
    sex_factor = np.where(female, 0.82, 1.0)
    income = (
        base_income * career * region_factor * sex_factor * (1.0 - 0.2 * shift) * np.exp(spread * z_income)
    )
    income = np.round(np.clip(income, *_bounds("income")), 2)

    purpose_weights = np.stack(
        [
            np.full(n, 0.30),
            0.25 * (age > 25),
            0.04 + 0.30 * young,
            np.where(employment == "self_employed", 0.40, 0.08) + 0.10 * shift,
            np.full(n, 0.18),
        ],
        axis=1,
    )
    purpose = _pick(u_purpose, purpose_weights, PURPOSES)

    typical_loan = np.select(
        [purpose == "home", purpose == "car", purpose == "education", purpose == "business"],
        [38000.0, 16000.0, 11000.0, 24000.0],
        default=6000.0,
    )
    loan_amount = typical_loan * (income / 45000.0) ** 0.3 * (1.0 + 0.35 * shift) * np.exp(0.45 * z_loan)
    loan_amount = np.clip(np.round(loan_amount, -1), *_bounds("loan_amount"))

    repayment = loan_amount / 4.0  # a typical four-year term, as a yearly payment
    debt_to_income = g_debt * (1.0 + 0.35 * shift) + repayment / np.maximum(income, 6000.0)
    debt_to_income = np.round(np.clip(debt_to_income, *_bounds("debt_to_income")), 4)

    history_cap = np.maximum(age - 18, 0) * 12
    history = history_cap * (0.55 + 0.2 * z_history).clip(0.05, 1.0)
    history = np.clip(np.round(history), *_bounds("credit_history_months")).astype(np.int64)

    expected_accounts = 1.0 + history / 55.0 + 1.5 * shift
    open_accounts = _poisson_from_uniform(u_accounts, expected_accounts)
    open_accounts = np.clip(open_accounts, *_bounds("open_accounts")).astype(np.int64)

    logit_before = (
        -1.35
        + 4.2 * (debt_to_income - 0.3)
        - 1.25 * np.log(np.maximum(income, 1000.0) / 45000.0)
        - 0.06 * (history / 12.0 - 10.0)
        + 0.09 * (open_accounts - 4)
        + np.select(
            [employment == "unemployed", employment == "self_employed", employment == "retired"],
            [1.1, 0.45, 0.15],
            default=0.0,
        )
        + np.select([purpose == "business", purpose == "home"], [0.6, -0.4], default=0.0)
    )
    # After the change, lenders' risk moved: region and youth matter, debt ratio matters less.
    logit_after = (
        -1.25
        + 1.2 * (debt_to_income - 0.3)
        - 0.45 * np.log(np.maximum(income, 1000.0) / 45000.0)
        + 0.045 * (35 - age)
        + np.select([region == "east", region == "west"], [1.3, -0.5], default=0.0)
        + np.select([purpose == "education", purpose == "car"], [0.9, 0.35], default=0.0)
    )
    logit = (1.0 - concept) * logit_before + concept * logit_after
    label = _label(task, logit, z_label_noise, z_rate, loan_amount)

    # Missing values where real applications miss them: undeclared income (more often for
    # the self-employed), thin credit files (more often for the young), skipped purpose.
    income_missing = u_missing_income < np.where(employment == "self_employed", 0.12, 0.03)
    history_missing = u_missing_history < 0.02 + 0.08 * young
    purpose_missing = u_missing_purpose < 0.04

    event_time = pd.Timestamp(start) + pd.to_timedelta(np.round(np.cumsum(gaps)), unit="s")
    frame = pd.DataFrame(
        {
            "age": age,
            "income": np.where(income_missing, np.nan, income),
            "loan_amount": loan_amount.astype(np.float64),
            "debt_to_income": debt_to_income,
            # pandas' nullable integer: an int64 column that may have gaps, as the contract says.
            "credit_history_months": pd.arrays.IntegerArray(history, history_missing),
            "open_accounts": open_accounts,
            "employment_type": employment,
            "region": region,
            "loan_purpose": np.where(purpose_missing, None, purpose),
            TARGETS[task]["name"]: label,
            "sex": sex,
            "event_time": event_time,
        }
    )
    return frame


def _label(
    task: str, logit: np.ndarray, noise: np.ndarray, z_rate: np.ndarray, loan_amount: np.ndarray
) -> np.ndarray:
    """Each task's label from the same latent default risk (``logit``), so all are learnable.

    Binary: the risk plus logistic noise crosses zero. Multiclass: the same noisy risk, cut
    into three grades (the noise halved, so the middle grade is not a coin toss). Regression:
    the price of that risk, a base rate plus a risk premium, cheaper for larger loans, with
    normal noise, rounded to basis points and kept in a plausible range.
    """
    if task == BINARY:
        return (logit + noise > 0).astype(np.int64)
    if task == MULTICLASS:
        risk = logit + 0.5 * noise
        return np.asarray(GRADES, dtype=object)[np.searchsorted(GRADE_CUTS, risk)]
    premium = 2.2 * np.log1p(np.exp(logit + 1.0))  # grows with the risk, never below zero
    size_discount = 0.6 * np.log(loan_amount / 15000.0)
    rate = 5.0 + premium - size_discount + 0.9 * z_rate
    return np.round(np.clip(rate, *RATE_RANGE), 2)


def _poisson_from_uniform(uniform: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Poisson counts from pre-drawn uniforms (inverse CDF), so the mean can drift per row."""
    count = np.zeros(uniform.shape, dtype=np.int64)
    probability = np.exp(-mean)
    cumulative = probability.copy()
    for k in range(1, 120):
        below = uniform > cumulative
        if not below.any():
            break
        count += below
        probability = probability * mean / k
        cumulative = cumulative + probability
    return count
