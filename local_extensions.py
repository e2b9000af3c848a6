"""Refuse an unsafe project_slug before cookiecutter creates the output folder.

Cookiecutter creates the project folder from the slug *before* the pre-generation hook
runs, so a slug such as ``a/b`` would leave a stray ``a/`` behind even when the hook
rejects it. This Jinja extension checks the slug while the folder name is rendered.
"""

from __future__ import annotations

import json
import re

from cookiecutter.exceptions import FailedHookException
from jinja2.ext import Extension

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
FOLDER = "{{cookiecutter.project_slug}}"


def checked_slug(value: str) -> str:
    if len(value) <= 50 and SLUG.match(value):
        return value
    raise FailedHookException(
        f"ERROR: prompt 'project_slug' has value {json.dumps(value)}: it must be lowercase letters and "
        "digits in words joined by single hyphens, at most 50 characters, e.g. loan-default-model."
    )


class SlugGuard(Extension):
    """Route the project folder's name through ``checked_slug``."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["checked_slug"] = checked_slug

    def preprocess(self, source, name, filename=None):
        if source == FOLDER:
            return "{{ cookiecutter.project_slug | checked_slug }}"
        return source
