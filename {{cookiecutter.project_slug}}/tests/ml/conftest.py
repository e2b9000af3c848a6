"""Fixtures of the ml tests: the project's policy and one small trained model per family."""

from __future__ import annotations

import pytest

from governance.core import policy as policy_file
from governance.core.paths import Paths
from governance.core.policy import Policy
from tests.support import training


@pytest.fixture(scope="session")
def policy() -> Policy:
    """governance/policy.yaml of this project, as every gate reads it."""
    return policy_file.load(Paths(training.PROJECT).policy)


@pytest.fixture(params=training.offered_families())
def family_model(request: pytest.FixtureRequest) -> training.Trained:
    """Each offered model family, trained small and exported (cached for the session)."""
    return training.trained(request.param)


@pytest.fixture
def linear_model() -> training.Trained:
    return training.trained("linear")
