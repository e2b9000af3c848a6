"""The error types of the project, and how a broken record is described to a person.

Two kinds of "no" and one exit-code convention for the whole command line: a `CheckFailed`
(a policy gate, a validation, a parity check said no) exits 1; an `InputError` (a bad file,
argument or setting, something the user must fix first) exits 2. Domain errors subclass one
of them, so the command line never needs to know the domain to answer correctly.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError


class ProjectError(Exception):
    """Anything the command line reports as one `error: ...` line; `exit_code` says which kind."""

    exit_code = 2


class InputError(ProjectError):
    """Bad input or usage: a file, an argument or a setting breaks a rule. Exit code 2."""

    exit_code = 2


class CheckFailed(ProjectError):
    """A check or gate ran and said no (validation, policy gates, parity). Exit code 1."""

    exit_code = 1


class FieldRule(ValueError):
    """Raised inside a record's validator: names the sub-field, the rule and the offending value."""

    def __init__(self, field: str, rule: str, value: Any) -> None:
        super().__init__(rule)
        self.field = field
        self.rule = rule
        self.value = value


def shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def location(parts: tuple[Any, ...] | list[Any]) -> str:
    """('features', 2, 'kind') -> 'features[2].kind'."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


# What pydantic appends to a location when a value fits none of a union's members.
TYPE_TAGS = re.compile(r"^(float|int|str|bool|none|list|dict|tuple|literal|function-\w+)(\[.*\])?$")


def describe(error: ValidationError, source: str) -> str:
    """Every problem pydantic found, one per line: `<source>: field '<where>' <rule> (got <value>)`.

    A value that fits none of a union's types (`float | int`) is one line, not one per type.
    """
    lines: list[str] = []
    for item in error.errors(include_url=False):
        where = list(item["loc"])
        while where and isinstance(where[-1], str) and TYPE_TAGS.match(where[-1]):
            where.pop()
        value = item.get("input")
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldRule):
            where.append(cause.field)
            value, rule = cause.value, cause.rule
        else:
            rule = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            rule = rule[:1].lower() + rule[1:]
        if item["type"] == "extra_forbidden":
            rule = "is not a known field (a typo?)"
        head, tail = f"{source}: field '{location(where)}' ", f" (got {shown(value)})"
        if lines and lines[-1].startswith(head) and lines[-1].endswith(tail):  # another type of one union
            lines[-1] = lines[-1].removesuffix(tail) + f" or {rule}{tail}"
        else:
            lines.append(f"{head}{rule}{tail}")
    return "\n".join(lines)
