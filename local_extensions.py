"""Jinja extensions of the template: a slug guard and a quoting filter for structured files.

``SlugGuard``: cookiecutter creates the project folder from the slug *before* the
pre-generation hook runs, so a slug such as ``a/b`` would leave a stray ``a/`` behind even
when the hook rejects it. This extension checks the slug while the folder name is rendered.

``QuotedText``: the ``quoted`` filter writes free text (a description, an author, a file
name) as one double-quoted string that TOML and YAML both read back exactly. Jinja's
``tojson`` is not that: it writes characters outside the BMP as JSON surrogate pairs
(``"\\ud83d\\ude80"`` for a rocket), which TOML rejects and YAML turns into two broken
characters.
"""

from __future__ import annotations

import json
import re

from cookiecutter.exceptions import FailedHookException
from jinja2.ext import Extension

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
FOLDER = "{{cookiecutter.project_slug}}"

# Escaped as \uXXXX: C0 controls and DEL (TOML forbids them raw), C1 controls and the
# non-characters U+FFFE/U+FFFF (not printable in YAML), NEL, LS and PS (YAML line breaks,
# which a double-quoted YAML scalar would fold into spaces) and the byte-order mark.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def checked_slug(value: str) -> str:
    if len(value) <= 50 and SLUG.match(value):
        return value
    raise FailedHookException(
        f"ERROR: prompt 'project_slug' has value {json.dumps(value)}: it must be lowercase letters and "
        "digits in words joined by single hyphens, at most 50 characters, e.g. loan-default-model."
    )


def quoted(value: object) -> str:
    """``value`` as a double-quoted string, valid and exact in TOML and in YAML (1.1 and 1.2).

    Only the backslash, the double quote and the characters in ``UNSAFE`` are escaped, with
    the escapes both languages share; every other character, emoji included, stays as it is.
    """
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + UNSAFE.sub(lambda m: SHORT_ESCAPES.get(m[0], f"\\u{ord(m[0]):04x}"), text) + '"'


class SlugGuard(Extension):
    """Route the project folder's name through ``checked_slug``."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["checked_slug"] = checked_slug

    def preprocess(self, source, name, filename=None):
        if source == FOLDER:
            return "{{ cookiecutter.project_slug | checked_slug }}"
        return source


class QuotedText(Extension):
    """Make ``quoted`` available to every template file."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["quoted"] = quoted
