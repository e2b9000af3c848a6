"""`python -m ml.cli train | register | card`: the one entry point behind `make train register`.

train    snapshot -> split -> fit -> evaluate -> ONNX export -> parity -> latency -> gates,
         written to artifacts/models/<version>/ (model.onnx, metrics.json, parity.json,
         gates.json, training.json) with artifacts/models/latest naming it.
register the latest trained model, if it passed every gate, becomes a `candidate` entry in
         governance/registry.yaml, and its model card is written.
card     rewrite the model card of a registered version.

Exit codes: 0 done, 1 a policy gate (or the export) failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_pipelines.contract import CONTRACT_PATH, ContractError
from data_pipelines.contract import load as load_contract
from governance import model_card, registry

EXIT_OK, EXIT_GATE, EXIT_INPUT = 0, 1, 2


class InputError(ValueError):
    """Something the user must fix before the command can run (message says what)."""


@dataclass(frozen=True)
class Paths:
    """Where everything lives; all relative to the project root unless overridden."""

    root: Path
    policy: Path
    registry: Path
    params: Path
    contract: Path
    snapshots: Path
    models: Path
    cards: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Paths:
        root = args.root.resolve()
        contract = root / "data_pipelines" / "contract.yaml"
        return cls(
            root=root,
            policy=args.policy or root / "governance" / "policy.yaml",
            registry=args.registry or root / "governance" / "registry.yaml",
            params=args.params or root / "ml" / "params.yaml",
            contract=args.contract or (contract if contract.is_file() else CONTRACT_PATH),
            snapshots=root / "artifacts" / "snapshots",
            models=root / "artifacts" / "models",
            cards=args.cards or root / "governance" / "model_cards",
        )

    def relative(self, path: Path) -> str:
        """Paths in the registry are relative to the project, so the entry survives a fresh clone."""
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path.resolve())


def say(message: str) -> None:
    print(f"[ml] {message}", flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """A progress line per slow step, with its duration, so a long run never looks stuck."""
    say(f"{title} ...")
    start = time.perf_counter()
    yield
    say(f"{title}: done in {time.perf_counter() - start:.1f}s")


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} is missing: run `make train` again") from None


def git_commit(root: Path) -> str:
    """The code commit the model came from, or "unknown" outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, fixed arguments
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def train(args: argparse.Namespace) -> int:
    # Heavy imports here, so `register` and `card` start fast.
    from data_pipelines import snapshot
    from ml.evaluate import evaluate
    from ml.export import convert, metadata, parity, session, stamp
    from ml.features import model_frame
    from ml.gates import champion_baseline, check, failures, load_policy, single_row_latency_ms
    from ml.train import fit, labels, load_params, split

    paths = Paths.from_args(args)
    policy = load_policy(paths.policy)
    params = load_params(paths.params)
    contract = load_contract(paths.contract)
    champion = registry.champion(paths.registry)
    folder = snapshot.resolve(args.snapshot or snapshot.LATEST, root=paths.snapshots)

    with step(f"loading snapshot {folder.name}"):
        df, manifest = snapshot.load(folder)
    if manifest.get("contract_sha256") != contract.digest:
        raise InputError(
            f"snapshot {folder.name} was made under data contract {manifest.get('contract_sha256')!r}, "
            f"the current contract is {contract.digest!r}: run `make data` to snapshot under this contract"
        )
    with step(f"training {params.model_family} on {len(df)} rows"):
        parts = split(df, contract, params)
        pipeline = fit(parts.train, contract, params)
    with step(f"evaluating on {len(parts.test)} held-out rows"):
        frame = model_frame(parts.test, contract)
        y_test = labels(parts.test, contract)
        classes = [int(value) for value in pipeline.classes_]
        quality = evaluate(
            parts.test,
            y_test,
            pipeline.predict(frame),
            pipeline.predict_proba(frame),
            classes,
            contract,
            policy.bias_metric,
        )
    with step(f"exporting to ONNX (opset {policy.opset})"):
        props = metadata(params.model_name, params.model_family, contract, classes, str(manifest["sha256"]))
        content, version = stamp(
            convert(pipeline, contract, policy.opset, params.model_name), props, str(manifest["created_at"])
        )
    with step("checking parity (onnxruntime vs scikit-learn) and single-row latency"):
        runner = session(content)
        parity_result = parity(runner, pipeline, frame, contract, policy.parity_tolerance)
        latency = single_row_latency_ms(runner, frame, contract)
        baseline = champion_baseline(champion, paths.root, frame, y_test, contract, policy.primary_metric)
    gates = check(policy, quality["metrics"], quality["bias"], parity_result, latency, baseline)
    passed = all(gate.passed for gate in gates)

    out = paths.models / version
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    model_path.write_bytes(content)
    write_json(out / "metrics.json", {"version": version, "model_family": params.model_family, **quality})
    write_json(out / "parity.json", {"version": version, **parity_result})
    write_json(
        out / "gates.json",
        {
            "version": version,
            "passed": passed,
            "policy": paths.relative(paths.policy),
            "champion": None if baseline is None else asdict(baseline),
            "gates": [gate.to_dict() for gate in gates],
        },
    )
    write_json(
        out / "training.json",
        {
            "version": version,
            "model_name": params.model_name,
            "model_family": params.model_family,
            "estimator": params.estimator,
            "seed": params.seed,
            "test_size": params.test_size,
            "opset": policy.opset,
            "contract_sha256": contract.digest,
            "artifact": {"path": paths.relative(model_path), "sha256": hashlib.sha256(content).hexdigest()},
            "data": {
                "snapshot_id": str(manifest["snapshot_id"]),
                "sha256": str(manifest["sha256"]),
                "rows": int(manifest.get("rows", len(df))),
                "source": manifest.get("source"),
                "time_window": manifest.get("time_window"),
                "train_rows": len(parts.train),
                "test_rows": len(parts.test),
            },
        },
    )
    (paths.models / "latest").write_text(version + "\n")

    say(f"model {version} -> {paths.relative(out)}")
    for gate in gates:
        say(f"  {'PASS' if gate.passed else 'FAIL'} {gate.name}: {gate.message}")
    if not passed:
        for line in failures(gates, paths.relative(paths.policy)):
            print(f"error: {line}", file=sys.stderr)
        print(f"error: model {version} failed the policy gates; it will not be registered", file=sys.stderr)
        return EXIT_GATE
    say(f"all gates passed: `make register` records {version} as a candidate")
    return EXIT_OK


def build_entry(out: Path, version: str, commit: str) -> dict[str, Any]:
    """A registry entry assembled from what `train` wrote for this version."""
    training = read_json(out / "training.json")
    quality = read_json(out / "metrics.json")
    parity_result = read_json(out / "parity.json")
    gates = read_json(out / "gates.json")
    stamp_now = registry.now()
    return {
        "version": version,
        "model_name": training["model_name"],
        "model_family": training["model_family"],
        "stage": "candidate",
        "artifact": training["artifact"],
        "data": training["data"],
        "contract_sha256": training["contract_sha256"],
        "code_commit": commit,
        "metrics": quality["metrics"],
        "bias": quality["bias"],
        "gates": {
            gate["name"]: {key: gate[key] for key in ("passed", "value", "threshold", "margin")}
            for gate in gates["gates"]
        },
        "parity": {key: parity_result[key] for key in ("max_abs_diff", "labels_equal", "rows", "tolerance")},
        "created_at": stamp_now,
        "updated_at": stamp_now,
    }


def register(args: argparse.Namespace) -> int:
    paths = Paths.from_args(args)
    latest = paths.models / "latest"
    version = args.version or (latest.read_text().strip() if latest.is_file() else "")
    if not version:
        raise InputError(f"no trained model in {paths.models}: run `make train` first")
    out = paths.models / version
    if not out.is_dir():
        raise InputError(f"trained model {version} not found in {paths.models}: run `make train` first")
    gates = read_json(out / "gates.json")
    if not gates.get("passed"):
        failed = [gate["name"] for gate in gates.get("gates", []) if not gate.get("passed")]
        print(
            f"error: model {version} failed the policy gate(s) {failed} in training; it cannot be registered",
            file=sys.stderr,
        )
        return EXIT_GATE
    entry = build_entry(out, version, git_commit(paths.root))
    existing = {item["version"]: item for item in registry.load(paths.registry)["models"]}
    if version in existing:
        if existing[version]["artifact"]["sha256"] != entry["artifact"]["sha256"]:
            raise InputError(f"version {version} is already registered with a different artifact sha256")
        say(
            f"{version} is already registered (stage {existing[version]['stage']}); refreshing its model card"
        )
        entry = existing[version]
    else:
        registry.append(entry, paths.registry, root=paths.root)
        say(f"registered {version} as a candidate in {paths.relative(paths.registry)}")
    card = model_card.write(entry, paths.cards, paths.policy, paths.contract)
    say(f"model card: {paths.relative(card)}")
    return EXIT_OK


def card(args: argparse.Namespace) -> int:
    paths = Paths.from_args(args)
    entry = registry.get(args.version, paths.registry)
    path = model_card.write(entry, paths.cards, paths.policy, paths.contract)
    say(f"model card: {paths.relative(path)}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root", type=Path, default=Path.cwd(), help="project folder (default: current folder)"
    )
    common.add_argument("--policy", type=Path, help="policy file (default: governance/policy.yaml)")
    common.add_argument("--registry", type=Path, help="registry file (default: governance/registry.yaml)")
    common.add_argument("--params", type=Path, help="training parameters (default: ml/params.yaml)")
    common.add_argument("--contract", type=Path, help="data contract (default: data_pipelines/contract.yaml)")
    common.add_argument("--cards", type=Path, help="model card folder (default: governance/model_cards)")
    main_parser = argparse.ArgumentParser(prog="python -m ml.cli", description=__doc__.split("\n\n")[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser(
        "train", parents=[common], help="train, evaluate, export, check parity and gates"
    )
    train_parser.add_argument("--snapshot", help="snapshot id, id prefix or folder (default: the latest)")
    train_parser.set_defaults(handler=train)
    register_parser = commands.add_parser(
        "register", parents=[common], help="register the latest trained model"
    )
    register_parser.add_argument("--version", help="a trained version other than the latest")
    register_parser.set_defaults(handler=register)
    card_parser = commands.add_parser(
        "card", parents=[common], help="write the model card of a registered version"
    )
    card_parser.add_argument("version")
    card_parser.set_defaults(handler=card)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, ContractError, registry.RegistryError, OSError) as error:
        # Params, policy, contract, registry and data errors all name what to fix.
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except RuntimeError as error:  # the export could not produce the interface serving needs
        print(f"error: {error}", file=sys.stderr)
        return EXIT_GATE


if __name__ == "__main__":
    sys.exit(main())
