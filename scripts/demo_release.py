"""The demo's release steps: a new model meets live traffic before it takes it (issue 15).

After `cd` has staged the retrained model, it runs in shadow beside the champion (the champion's
image with SHADOW_MODEL_PATH), `make compare` judges it on that live traffic and the promotion
pull request carries the comparison. Then a deliberately bad candidate (trained on shuffled
labels) is held at shadow by `make compare`, and when it is forced into production anyway the
post-deploy check finds the breach and `make rollback` opens the pull request that restores the
previous digest, once however often the check runs.

Each function is one step of scripts/demo.py's PLAN and takes the running `Demo`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from demo_report import DemoError

# (rows, seed, covariate drift, concept drift): the world after the downturn, as the drifted phase.
SHADOW_PHASE = (1500, 303, 0.8, 0.5)
BAD_SHADOW_PHASE = (1000, 404, 0.8, 0.5)
FORCED_PHASE = (1000, 505, 0.8, 0.5)
FORCED_REASON = "demo: forced into production past its gates, to show the post-deploy rollback"


def registry_stage(demo: Any, stage: str) -> str:
    """The version governance/registry.yaml (checked out on main) has in `stage`."""
    models = yaml.safe_load((demo.project / "governance" / "registry.yaml").read_text())["models"]
    found = [entry["version"] for entry in models if entry["stage"] == stage]
    if len(found) != 1:
        raise DemoError(f"governance/registry.yaml has {len(found)} versions in {stage}, not 1")
    return found[0]


def model_folder(demo: Any, version: str) -> Path:
    """The trained model folder of `version`: the project's own, or a CI artifact act downloaded."""
    for root in (demo.project / "artifacts" / "models", demo.project / "reports" / "act"):
        for onnx in sorted(root.rglob("model.onnx")):
            if onnx.parent.name == version:
                return onnx.parent
    raise DemoError(f"no trained model folder named {version} under artifacts/models or reports/act")


def shadow_phase(demo: Any, capture: Path, challenger: Path, phase: tuple, model: Path | None = None) -> str:
    """Serve with `challenger` in shadow, send one phase of traffic with labels, stop; checks the
    capture holds every answer twice (champion and challenger) and every label."""
    served = demo.start_service(capture, model=model, challenger=challenger)
    sent = demo.traffic_phase(*phase)
    how = demo.stop_service()
    kinds = capture_kinds(capture)
    if kinds.get("shadow", 0) < sent["rows"] or kinds.get("feedback", 0) < sent["labelled"]:
        raise DemoError(
            f"{capture} holds {kinds} after {sent['rows']} rows and {sent['labelled']} labels: the shadow "
            "answers or labels did not all reach the capture"
        )
    return f"{served}; {sent['rows']} rows answered and shadowed, {sent['labelled']} labels; {how}"


def capture_kinds(folder: Path) -> dict[str, int]:
    """How many lines of each kind (prediction, shadow, feedback) the capture under `folder` holds."""
    kinds: dict[str, int] = {}
    for path in folder.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            kind = json.loads(line).get("kind")
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def judged(demo: Any, capture: Path, wanted: str) -> dict:
    """`make compare` on the capture; its record, which must have decided `wanted`."""
    demo.run(["make", "compare"], env=demo.make_env(CAPTURE_URI=str(capture)), check=False)
    record = demo.read_json(demo.project / "reports" / "compare" / "compare.json")
    if record.get("verdict") != wanted:
        raise DemoError(
            f"make compare decided {record.get('verdict')!r}, not {wanted!r}: "
            + "; ".join(record.get("reasons", []))
        )
    return record


def merge_branch(demo: Any, branch: str) -> int:
    """A reviewed PR from `branch` merged into main (origin and local), closed on the stand-in."""
    pulls = [pull for pull in demo.github.pulls("open") if pull["head"]["ref"] == branch]
    if len(pulls) != 1:
        raise DemoError(f"expected one open PR from {branch} on the GitHub stand-in, found {len(pulls)}")
    demo.git("fetch", "--quiet", "origin")
    demo.git("checkout", "--quiet", "--force", "main")
    demo.git("merge", "--quiet", "--no-edit", f"origin/{branch}")
    demo.git("push", "--quiet", "origin", "main")
    demo.github.close(pulls[0]["number"])
    return pulls[0]["number"]


# -- the steps --------------------------------------------------------------------------------------
def shadow(demo: Any) -> str:
    """The staging GitOps PR merged; its model scored in shadow beside the champion on live traffic."""
    number = merge_branch(demo, "gitops/staging")
    demo.challenger = registry_stage(demo, "staging")
    folder = model_folder(demo, demo.challenger)
    note = shadow_phase(demo, demo.build / "capture-shadow", folder, SHADOW_PHASE)
    demo.evidence.facts["challenger in shadow"] = f"{demo.challenger} (staging since GitOps PR #{number})"
    return f"GitOps PR #{number} merged: {demo.challenger} in staging, in shadow: {note}"


def compare(demo: Any) -> str:
    record = judged(demo, demo.build / "capture-shadow", "promote")
    reports = demo.project / "reports" / "compare"
    demo.evidence.links["Champion vs challenger on live traffic (make compare, HTML)"] = (
        reports / "report.html"
    )
    demo.evidence.inline["Comparison (the promotion PR's evidence)"] = (reports / "summary.md").read_text()
    agreement = record.get("agreement")
    told = f"agreement {agreement:.1%}, " if isinstance(agreement, float) else ""
    return (
        f"promote: {record['rows']} rows answered by both, {record['labelled_rows']} labelled; "
        f"{told}score distance {record.get('score_distance')}"
    )


def promote(demo: Any) -> str:
    """`make promote` opens the production GitOps PR, the comparison in its body."""
    demo.run(["make", "promote"], env=demo.make_env(VERSION=demo.challenger, **demo.github.env()))
    pulls = [pull for pull in demo.github.pulls("open") if pull["head"]["ref"] == "gitops/production"]
    if len(pulls) != 1:
        raise DemoError(f"expected one open GitOps PR from gitops/production, found {len(pulls)}")
    body = pulls[0]["body"] or ""
    summary = (demo.project / "reports" / "compare" / "summary.md").read_text().strip()
    if summary.splitlines()[0] not in body:
        raise DemoError(f"the promotion PR #{pulls[0]['number']} does not carry the comparison")
    demo.evidence.inline[f"Promotion PR #{pulls[0]['number']} body"] = body
    # make promote changed the registry and the overlay here too; on main they wait for the merge.
    demo.git("checkout", "--quiet", "--", "governance", "deploy")
    number = pulls[0]["number"]
    return f"PR #{number} from gitops/production: {demo.challenger} to production, comparison attached"


def bad_candidate(demo: Any) -> str:
    """A model trained on shuffled labels: its gates fail, and in shadow `make compare` rejects it."""
    shuffled = demo.build / "shuffled-labels.parquet"
    demo.run([demo.python, "-c", SHUFFLE, str(shuffled)], env=demo.make_env())
    mlops = str(
        demo.project / ".venv" / "bin" / "mlops"
    )  # the project's command line, the make targets' steps
    made = demo.run([mlops, "data", "--input", str(shuffled), "--ignore-request"])
    snapshot = re.search(r"^snapshot (\S+):", made, re.M)
    if not snapshot:
        raise DemoError("make data did not say which snapshot it built from the shuffled labels")
    trained = demo.run(["make", "train"], env=demo.make_env(SNAPSHOT=snapshot.group(1)), check=False)
    version = re.search(r"model (\S+) -> ", trained)
    if demo.last_code == 0 or not version:
        raise DemoError("a model trained on shuffled labels passed its gates: the gates do not hold")
    demo.bad = version.group(1)
    note = shadow_phase(demo, demo.build / "capture-bad", model_folder(demo, demo.bad), BAD_SHADOW_PHASE)
    record = judged(demo, demo.build / "capture-bad", "reject")
    demo.evidence.inline["Comparison of the shuffled-label candidate (held at shadow)"] = (
        demo.project / "reports" / "compare" / "summary.md"
    ).read_text()
    return f"{demo.bad} failed its gates; in shadow ({note.split('; ')[1]}): reject ({record['reasons'][0]})"


def forced(demo: Any) -> str:
    """The bad model forced into production; the post-deploy check opens the rollback PR, once."""
    mlops = str(demo.project / ".venv" / "bin" / "mlops")
    demo.run([mlops, "register", "--version", demo.bad, "--override", FORCED_REASON])
    demo.run([demo.python, "-c", FORCE, demo.bad])
    demo.git("add", "governance")
    demo.git("commit", "--quiet", "-m", f"Force {demo.bad} into production (bypassing review)")
    demo.git("push", "--quiet", "origin", "main")
    capture = demo.build / "capture-bad"
    demo.start_service(capture, model=model_folder(demo, demo.bad))
    demo.traffic_phase(*FORCED_PHASE)
    demo.stop_service()
    demo.run(["make", "post-deploy-check"], env=demo.make_env(CAPTURE_URI=str(capture)), check=False)
    check = demo.read_json(demo.project / "reports" / "post_deploy" / "check.json")
    if check.get("verdict") != "rollback":
        raise DemoError(
            f"the post-deploy check decided {check.get('verdict')!r}, not rollback: {check.get('reasons')}"
        )
    for _ in range(2):  # the schedule fires again before anyone merged: still one PR
        demo.run(
            ["make", "rollback"],
            env=demo.make_env(ROLLBACK_ARGS="--check reports/post_deploy/check.json", **demo.github.env()),
        )
        # Each scheduled run starts from a fresh checkout of main: the change lives in the PR.
        demo.git("checkout", "--quiet", "--", "governance", "deploy")
    pulls = [pull for pull in demo.github.pulls("all") if pull["head"]["ref"] == "rollback/production"]
    if len(pulls) != 1:
        raise DemoError(f"expected one rollback PR from rollback/production, found {len(pulls)}")
    overlay = demo.github.file("rollback/production", "deploy/overlays/production/kustomization.yaml") or ""
    if demo.champion_digest and demo.champion_digest not in overlay:
        raise DemoError(f"the rollback PR does not pin the previous production digest {demo.champion_digest}")
    demo.evidence.links["Post-deploy check (HTML)"] = demo.project / "reports" / "post_deploy" / "report.html"
    demo.evidence.inline[f"Rollback PR #{pulls[0]['number']} body"] = pulls[0]["body"]
    number = pulls[0]["number"]
    return f"post-deploy check: rollback ({check['reasons'][0]}); PR #{number} restores the previous digest"


# Run with the project's Python: its latest snapshot with the target column shuffled.
SHUFFLE = """
import sys
from pathlib import Path
import numpy as np, pandas as pd
from governance.core.contract import load
from governance.core.paths import Paths
paths = Paths(Path.cwd())
latest = (paths.snapshots / "latest").read_text().strip()
frame = pd.read_parquet(paths.snapshots / latest / "data.parquet")
target = load(paths.contract).target.name
frame[target] = np.random.default_rng(7).permutation(frame[target].to_numpy())
frame.to_parquet(sys.argv[1], index=False)
"""
# An operator bypassing the promotion pull request (what the registry's review normally stops).
FORCE = """
import sys
from pathlib import Path
from governance import registry
from governance.core.paths import Paths
registry.set_stage(sys.argv[1], "production", Paths(Path.cwd()).registry)
"""
