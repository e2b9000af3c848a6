"""Validate every prompt value before cookiecutter writes a single file.

The values arrive as data: Jinja serialises the whole context with ``tojson`` (which also
escapes quotes) and we parse it with ``json.loads``. No value is ever pasted into this
file's Python source, so a hostile value cannot run as code. On the first bad value we
print one line naming the prompt, the value and the rule, and exit non-zero; cookiecutter
then removes the half-made output folder.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from pathlib import Path

CONTEXT = json.loads(r"""{{ cookiecutter | tojson }}""")

# The example generator's label column for each task (data_pipelines/example.py).
EXAMPLE_TARGETS = {
    "binary_classification": "defaulted",
    "multiclass_classification": "risk_grade",
    "regression": "interest_rate",
}
EXAMPLE_SENSITIVE = ("sex", "")
RESERVED_NAMES = {"app", "ml", "data_pipelines", "governance", "deploy", "monitoring", "tests"}
DATA_SUFFIXES = (".csv", ".parquet", ".pq")

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
GITHUB_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
GITHUB_REPO = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
REGISTRY = re.compile(r"^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MARKUP = re.compile(r"\x7b[\x7b%#]")  # an opening brace by its code, so this file stays valid Jinja

# Cron fields: (name, lowest, highest, names allowed in place of numbers).
CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


class Invalid(Exception):
    """A prompt value broke a rule; the message says which rule."""


def check_choice(value: str, allowed: list[str]) -> None:
    if value not in allowed:
        raise Invalid(f"must be one of {', '.join(allowed)}")


def check_pattern(value: str, pattern: re.Pattern[str], rule: str, max_len: int) -> None:
    if len(value) > max_len:
        raise Invalid(f"must be at most {max_len} characters")
    if not pattern.match(value):
        raise Invalid(rule)


def check_text(value: str, max_len: int) -> None:
    if not value.strip():
        raise Invalid("must not be empty")
    if len(value) > max_len:
        raise Invalid(f"must be at most {max_len} characters")
    if CONTROL.search(value):
        raise Invalid("must be one line without control characters")
    if MARKUP.search(value):
        raise Invalid("must not contain template markup (double braces or brace-percent)")


def check_identifier(value: str) -> None:
    check_pattern(value, IDENTIFIER, "must be lowercase letters, digits and _ , starting with a letter", 50)
    if keyword.iskeyword(value):
        raise Invalid("must not be a Python keyword")
    if value in RESERVED_NAMES:
        raise Invalid(f"must not be one of the project's folder names ({', '.join(sorted(RESERVED_NAMES))})")


def check_github_repo(value: str) -> None:
    check_pattern(value, GITHUB_REPO, "must use letters, digits, '.', '_' and '-' only", 100)
    if not value.strip("."):
        raise Invalid("must not be only dots")


def check_cron_field(part: str, low: int, high: int, names: tuple[str, ...]) -> None:
    def number(token: str) -> int:
        if token.lower() in names:
            return low + names.index(token.lower())
        if not token.isdigit():
            raise ValueError(token)
        value = int(token)
        if not low <= value <= high:
            raise ValueError(token)
        return value

    for item in part.split(","):
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise ValueError(item)
        if base == "*":
            continue
        start, _, end = base.partition("-")
        if number(start) > (number(end) if end else high):
            raise ValueError(item)


def check_cron(value: str) -> None:
    parts = value.split()
    if len(parts) != 5 or CONTROL.search(value):
        raise Invalid("must be a five-field cron expression: minute hour day-of-month month day-of-week")
    for part, (name, low, high, names) in zip(parts, CRON_FIELDS, strict=True):
        try:
            check_cron_field(part, low, high, names)
        except ValueError:
            rule = f"numbers {low}-{high}, '*', ranges, lists or steps"
            raise Invalid(f"must have a valid {name} field ({part!r}): {rule}") from None


def check_data(ctx: dict[str, str]) -> None:
    """The data source decides which of data_path/target/sensitive are allowed."""
    source, path = ctx["data_source"], ctx["data_path"]
    if source == "example":
        if path:
            raise Invalid("data_path", path, "must be empty when data_source is 'example'")
        expected = EXAMPLE_TARGETS.get(ctx["task"], EXAMPLE_TARGETS["binary_classification"])
        if ctx["target_column"] != expected:
            raise Invalid(
                "target_column",
                ctx["target_column"],
                f"must be '{expected}' for the example data and task {ctx['task']}",
            )
        if ctx["sensitive_attribute"] not in EXAMPLE_SENSITIVE:
            raise Invalid(
                "sensitive_attribute",
                ctx["sensitive_attribute"],
                "must be 'sex' or empty for the example data",
            )
        return
    if not path:
        raise Invalid("data_path", path, "is required when data_source is 'file'")
    if CONTROL.search(path):
        raise Invalid("data_path", path, "must be one line without control characters")
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = Path(ctx.get("_output_dir") or ".") / resolved
    if resolved.suffix.lower() not in DATA_SUFFIXES:
        raise Invalid("data_path", path, f"must end in one of {', '.join(DATA_SUFFIXES)}")
    if not resolved.is_file():
        raise Invalid(
            "data_path", path, "must be an existing file (relative paths start at the output folder)"
        )
    if ctx["sensitive_attribute"] == ctx["target_column"]:
        raise Invalid("sensitive_attribute", ctx["sensitive_attribute"], "must differ from target_column")


CHECKS = {
    "project_name": lambda v: check_text(v, 80),
    "project_slug": lambda v: check_pattern(
        v,
        SLUG,
        "must be lowercase letters and digits in words joined by single hyphens, e.g. loan-default-model",
        50,
    ),
    "package_name": check_identifier,
    "model_name": check_identifier,
    "description": lambda v: check_text(v, 200),
    "author_name": lambda v: check_text(v, 100),
    "author_email": lambda v: check_pattern(v, EMAIL, "must be an e-mail address like name@example.com", 254),
    "github_owner": lambda v: check_pattern(
        v, GITHUB_OWNER, "must be a GitHub user or organisation name (letters, digits, single hyphens)", 39
    ),
    "github_repo": check_github_repo,
    "python_version": lambda v: check_choice(v, ["3.11", "3.12"]),
    "data_source": lambda v: check_choice(v, ["example", "file"]),
    "target_column": lambda v: check_pattern(v, COLUMN, "must be a column name of letters, digits and _", 64),
    "sensitive_attribute": lambda v: (
        v == "" or check_pattern(v, COLUMN, "must be empty or a column name of letters, digits and _", 64)
    ),
    "task": lambda v: check_choice(v, list(EXAMPLE_TARGETS)),
    "model_family": lambda v: check_choice(v, ["linear", "random_forest", "gradient_boosting"]),
    "drift_detector": lambda v: check_choice(v, ["alibi-detect", "scipy"]),
    "container_registry": lambda v: check_pattern(
        v,
        REGISTRY,
        "must be a lowercase registry host with optional :port and /namespace, e.g. ghcr.io/my-org",
        200,
    ),
    "drift_schedule": check_cron,
    "license": lambda v: check_choice(v, ["MIT", "BSD-3-Clause", "Apache-2.0", "Proprietary"]),
    "git_init": lambda v: check_choice(v, ["yes", "no"]),
}


def validate(ctx: dict[str, object]) -> None:
    """Raise Invalid(prompt, value, rule) for the first value that breaks a rule."""
    for name, check in CHECKS.items():
        value = ctx.get(name)
        if not isinstance(value, str):
            raise Invalid(name, value, "must be text")
        try:
            check(value)
        except Invalid as error:
            raise Invalid(name, value, error.args[0]) from None
    check_data(ctx)  # type: ignore[arg-type]


def main() -> int:
    try:
        validate(CONTEXT)
    except Invalid as error:
        name, value, rule = error.args
        print(f"ERROR: prompt '{name}' has value {json.dumps(value)}: it {rule}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
