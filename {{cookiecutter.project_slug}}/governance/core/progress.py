"""Progress of long steps, reported the same way by every domain.

Domains only say what they are doing (`with step("training ..."):`, `note(...)`); the command
line decides how it shows (a live spinner with elapsed time, plain lines in CI logs, nothing
with --quiet) by installing a reporter. Output goes to stderr, so stdout carries results only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Reporter(Protocol):
    def start(self, title: str) -> None: ...
    def done(self, title: str, seconds: float) -> None: ...
    def note(self, message: str) -> None: ...


class Lines:
    """Plain lines on stderr: readable in CI logs and when piped."""

    def start(self, title: str) -> None:
        print(f"==> {title} ...", file=sys.stderr, flush=True)

    def done(self, title: str, seconds: float) -> None:
        print(f"    {title}: done in {seconds:.1f}s", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        print(f"    {message}", file=sys.stderr, flush=True)


class Quiet:
    def start(self, title: str) -> None:
        return None

    def done(self, title: str, seconds: float) -> None:
        return None

    def note(self, message: str) -> None:
        return None


_reporter: Reporter = Lines()


def use(reporter: Reporter) -> None:
    global _reporter
    _reporter = reporter


@contextmanager
def step(title: str) -> Iterator[None]:
    """A slow step: announced, then closed with its duration, so a long run never looks stuck."""
    _reporter.start(title)
    started = time.perf_counter()
    yield
    _reporter.done(title, time.perf_counter() - started)


def note(message: str) -> None:
    _reporter.note(message)
