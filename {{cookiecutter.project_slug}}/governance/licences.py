"""`make licences`: every package the serving and batch images and the training environment install,
checked against the licences governance/policy.yaml allows.

The packages are the ones the hashed locks pin (requirements/serve.txt and batch.txt are exactly
the images' sets; train.txt and monitor.txt the training and monitoring environment's). Each package's licence
is read from its installed metadata: the SPDX `License-Expression` when it declares one (PEP 639),
else its trove classifiers, else a short `License` field. An expression passes when the allowed
licences satisfy it (`A OR B`: either, `A AND B`: both). A package the policy accepts by name
(`licences.accepted`, with the reason reviewers signed off) passes and is listed as accepted, so
an exception is always visible; everything else that does not pass fails the check, named with its
licence and, where the project offers one, the choice that avoids it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
from dataclasses import dataclass
from pathlib import Path

from governance.core.errors import CheckFailed, InputError
from governance.core.paths import Paths
from governance.core.policy import LicencePolicy

LOCKS = {
    "serving image": ("serve.txt",),
    "batch image": ("batch.txt",),
    "training environment": ("train.txt", "monitor.txt"),
}
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
TOKEN = re.compile(r"\(|\)|[^\s()]+")
# Trove classifiers (the last part) as the licence identifiers the policy lists.
CLASSIFIERS = {
    "MIT License": "MIT",
    "BSD License": "BSD",
    "Apache Software License": "Apache-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "ISC License (ISCL)": "ISC",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "GNU Library or Lesser General Public License (LGPL)": "LGPL",
    "Other/Proprietary License": "LicenseRef-Proprietary",
}
# Short free-text `License` fields seen in the wild, as identifiers.
FREE_TEXT = {
    "mit": "MIT",
    "mit license": "MIT",
    "bsd": "BSD",
    "3-clause bsd license": "BSD-3-Clause",
    "bsd 3-clause license": "BSD-3-Clause",
    "apache": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "apache license v2.0": "Apache-2.0",
    "apache 2.0 license": "Apache-2.0",
    "business source license 1.1": "BUSL-1.1",
}
# Where the project itself offers a way around a package, the message says so.
AVOIDED_BY = {
    "alibi-detect": "bake with drift_detector=scipy (the same KS and chi-squared tests, BSD licence)"
}


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    licence: str
    where: str
    verdict: str  # "allowed" | "accepted" | "refused"
    why: str = ""


def locked_packages(requirements: Path, files: tuple[str, ...]) -> list[str]:
    """The package names pinned in the given lock files (their `name==version` lines)."""
    names: set[str] = set()
    for name in files:
        path = requirements / name
        if not path.is_file():
            raise InputError(f"lock file {path} does not exist: run `make lock`")
        names.update(
            match[1].lower() for line in path.read_text().splitlines() if (match := PINNED.match(line))
        )
    return sorted(names)


def declared_licence(package: str) -> str:
    """The package's licence as an SPDX-like expression, or "" when its metadata does not say."""
    meta = metadata.metadata(package)
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    classified = [
        CLASSIFIERS.get(entry.split(" :: ")[-1], entry.split(" :: ")[-1])
        for entry in meta.get_all("Classifier") or []
        if entry.startswith("License ::") and entry != "License :: OSI Approved"
    ]
    if classified:
        return " OR ".join(dict.fromkeys(classified))  # several classifiers: a dual licence
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 40:
        return FREE_TEXT.get(text.lower(), text)
    return ""


def satisfied(expression: str, allowed: set[str]) -> bool:
    """Whether `allowed` satisfies an SPDX expression (OR: any side, AND: both; AND binds tighter)."""
    tokens = TOKEN.findall(expression)
    position = 0

    def either() -> bool:
        nonlocal position
        result = both()
        while position < len(tokens) and tokens[position].upper() == "OR":
            position += 1
            result = both() or result
        return result

    def both() -> bool:
        nonlocal position
        result = single()
        while position < len(tokens) and tokens[position].upper() == "AND":
            position += 1
            result = single() and result
        return result

    def single() -> bool:
        nonlocal position
        if position >= len(tokens):
            return False
        word = tokens[position]
        position += 1
        if word == "(":
            result = either()
            position += 1  # the closing parenthesis
            return result
        if position < len(tokens) and tokens[position].upper() == "WITH":
            position += 2  # an exception to a licence keeps the licence's verdict
        return word in allowed

    return bool(tokens) and either()


def check(paths: Paths, policy: LicencePolicy) -> list[Finding]:
    """Every locked package of the image and the training environment, with its verdict."""
    allowed, accepted = set(policy.allowed), {name.lower(): why for name, why in policy.accepted.items()}
    findings: dict[str, Finding] = {}
    for where, files in LOCKS.items():
        for package in locked_packages(paths.root / "requirements", files):
            if package in findings:
                continue
            try:
                version, licence = metadata.version(package), declared_licence(package)
            except metadata.PackageNotFoundError:
                findings[package] = Finding(
                    package, "?", "?", where, "refused", "not installed here: `make install`"
                )
                continue
            if package in accepted:
                verdict, why = "accepted", accepted[package]
            elif satisfied(licence, allowed):
                verdict, why = "allowed", ""
            else:
                verdict = "refused"
                why = f"licence {licence or 'not declared'} is not in licences.allowed"
                if package in AVOIDED_BY:
                    why += f"; {AVOIDED_BY[package]}"
            findings[package] = Finding(package, version, licence or "not declared", where, verdict, why)
    return list(findings.values())


def run(paths: Paths, policy: LicencePolicy, say=print) -> list[Finding]:
    """Print every exception and refusal; raise CheckFailed naming each refused package."""
    findings = check(paths, policy)
    refused = [finding for finding in findings if finding.verdict == "refused"]
    for finding in findings:
        if finding.verdict == "accepted":
            say(f"accepted by policy: {finding.package} {finding.version} ({finding.licence}): {finding.why}")
    say(f"licences: {len(findings) - len(refused)} of {len(findings)} packages pass governance/policy.yaml")
    if refused:
        lines = "\n".join(
            f"  {finding.package} {finding.version} ({finding.where}): {finding.why}" for finding in refused
        )
        raise CheckFailed(
            f"{len(refused)} package(s) break the licence policy "
            f"(licences in governance/policy.yaml):\n{lines}"
        )
    return findings
