"""`make licences`: the packages of the image and the training environment against the policy's list."""

from __future__ import annotations

import pytest

from governance import licences
from governance.core import policy as policy_file
from governance.core.errors import CheckFailed
from governance.core.paths import PATHS
from governance.core.policy import LicencePolicy


@pytest.mark.parametrize(
    ("expression", "allowed", "expected"),
    [
        ("MIT", {"MIT"}, True),
        ("GPL-3.0-only", {"MIT"}, False),
        ("Apache-2.0 OR BSD-3-Clause", {"BSD-3-Clause"}, True),
        ("MPL-2.0 AND (Apache-2.0 OR MIT)", {"MIT"}, False),
        ("MPL-2.0 AND (Apache-2.0 OR MIT)", {"MIT", "MPL-2.0"}, True),
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", {"GPL-2.0-or-later"}, True),
        ("", {"MIT"}, False),
    ],
)
def test_an_spdx_expression_is_satisfied_only_by_what_it_requires(expression, allowed, expected):
    assert licences.satisfied(expression, allowed) is expected


def test_the_projects_locked_packages_pass_its_policy():
    findings = licences.run(PATHS, policy_file.load().licences, say=lambda line: None)
    names = {finding.package for finding in findings}
    assert {"onnxruntime", "fastapi", "scikit-learn", "numpy"} <= names, (
        "image and training packages are checked"
    )
    assert all(finding.verdict != "refused" for finding in findings)


def test_a_licence_outside_the_list_fails_naming_the_package_and_its_licence():
    strict = LicencePolicy(allowed=("Apache-2.0",))
    with pytest.raises(CheckFailed) as refusal:
        licences.run(PATHS, strict, say=lambda line: None)
    message = str(refusal.value)
    assert "numpy" in message and "is not in licences.allowed" in message
    assert "onnx " not in message.replace("onnxruntime", ""), "onnx is Apache-2.0, allowed here"


def test_a_non_permissive_package_is_named_with_the_choice_that_avoids_it(monkeypatch):
    monkeypatch.setattr(licences, "locked_packages", lambda requirements, files: ["alibi-detect"])
    monkeypatch.setattr(licences.metadata, "version", lambda package: "0.13.0")
    monkeypatch.setattr(licences, "declared_licence", lambda package: "BUSL-1.1")
    with pytest.raises(CheckFailed, match="drift_detector=scipy"):
        licences.run(PATHS, LicencePolicy(), say=lambda line: None)
    accepted = LicencePolicy(accepted={"alibi-detect": "non-production evaluation"})
    lines: list[str] = []
    licences.run(PATHS, accepted, say=lines.append)
    assert any(line.startswith("accepted by policy: alibi-detect") for line in lines), "an exception is shown"
