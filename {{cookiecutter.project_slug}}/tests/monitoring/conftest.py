"""Fixtures of the monitoring tests: a registered workspace to run drift checks in.

The builders behind them (example data, capture files, records) are in tests/support/drift.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from governance import registry
from governance.core.paths import Paths
from tests.support import training


@pytest.fixture(scope="module")
def registered_workspace(
    trained_workspace: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Paths, str]:
    """(paths, version): a private copy of the trained workspace with its model registered.

    Shared by the tests of one module: each drift run adds its reports, snapshots and history
    line to it, as scheduled runs do in a real checkout.
    """
    root, version = trained_workspace
    paths = Paths(training.copy_workspace(root, tmp_path_factory.mktemp("monitoring") / "project"))
    entry, new = registry.register(paths, version)
    assert new and entry.version == version
    return paths, version
