"""`mlops`: the one command line, a subcommand per lifecycle step. The Makefile, CI and act call it.

`mlops --help` lists the steps; `mlops <step> --help` their options. One convention for all:
exit 0 when the step did its job, 1 when a check or gate said no (validation, policy gates,
parity, the image test, a rejected challenger), 3 only from `compare` (hold: not
enough evidence yet), 2 for bad input or usage (a file, an argument or a setting breaks a
rule); errors are one `error: ...` block on stderr naming the field, the rule and the value;
progress goes to stderr (a live spinner on a terminal, plain lines in CI logs, nothing with
--quiet), results to stdout. Each command only parses its options and calls its domain's
function: the work, and its tests, live in the domains.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from governance.core import progress
from governance.core.errors import CheckFailed, ProjectError
from governance.core.paths import PATHS, Paths

app = typer.Typer(
    name="mlops",
    help="The project's lifecycle, one subcommand per step (the make targets call these).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help text: readable in CI logs and narrow terminals alike
)

# Options the capture readers share (drift, compare, compact, post-deploy-check).
CaptureUri = Annotated[
    str | None, typer.Option(envvar="CAPTURE_URI", help="Capture root (folder or fsspec URL).")
]
Since = Annotated[str | None, typer.Option(help="Window start, ISO 8601 (UTC if no offset).")]
Until = Annotated[str | None, typer.Option(help="Window end (exclusive), ISO 8601.")]
Days = Annotated[float | None, typer.Option(min=0, help="Window: the last N days.")]


class Live:
    """A spinner with elapsed time per step on an interactive terminal (rich)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.status = None

    def start(self, title: str) -> None:
        self.status = self.console.status(f"{title} ...")
        self.status.start()

    def done(self, title: str, seconds: float) -> None:
        if self.status is not None:
            self.status.stop()
        self.console.print(f"[green]✓[/] {title} [dim]({seconds:.1f}s)[/]")

    def note(self, message: str) -> None:
        self.console.print(f"  {message}", highlight=False, markup=False)


def paths_of(ctx: typer.Context) -> Paths:
    return ctx.obj if isinstance(ctx.obj, Paths) else PATHS


@app.callback()
def root(
    ctx: typer.Context,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress output (results and errors only).")
    ] = False,
    project: Annotated[
        Path | None,
        typer.Option("--root", envvar="PROJECT_ROOT", help="Project folder (default: this checkout)."),
    ] = None,
) -> None:
    ctx.obj = Paths(project.resolve()) if project else PATHS
    if quiet:
        progress.use(progress.Quiet())
    elif sys.stderr.isatty() and not os.environ.get("CI"):
        progress.use(Live())
    else:
        progress.use(progress.Lines())


# --- data ------------------------------------------------------------------------------------


@app.command()
def contract(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option(help="A CSV/Parquet file (default: the configured source).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target column (default: source.yaml's target_column).")
    ] = None,
    sensitive: Annotated[
        str | None, typer.Option(help="Sensitive attribute ('' for none; default from source.yaml).")
    ] = None,
    write: Annotated[bool, typer.Option("--write", help="Write the draft instead of printing it.")] = False,
    output: Annotated[
        Path | None, typer.Option(help="Where --write puts it (default: data_pipelines/contract.yaml).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a contract that declares features.")
    ] = False,
) -> None:
    """Draft data_pipelines/contract.yaml from your data, for review.

    The target keeps its own labels; its task is the one the contract declares, else inferred
    (binary, multiclass or regression), with the reason printed and written as a comment.
    """
    from data_pipelines.infer import draft_contract, write_contract

    paths = paths_of(ctx)
    text = draft_contract(paths, data, target, sensitive)
    if write:
        write_contract(text, output or paths.contract, force)
    else:
        typer.echo(text, nl=False)


@app.command()
def data(
    ctx: typer.Context,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Ingest this CSV/Parquet instead of the source.")
    ] = None,
    rows: Annotated[int | None, typer.Option(min=1, help="Example source: number of rows.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Example source: generator seed.")] = None,
    request: Annotated[
        Path | None, typer.Option(help="Rebuild the retraining request in this folder.")
    ] = None,
    ignore_request: Annotated[
        bool,
        typer.Option(
            "--ignore-request", help="Build from the source even when a retraining request is here."
        ),
    ] = False,
    snapshots: Annotated[
        Path | None, typer.Option(help="Snapshot root (default: artifacts/snapshots).")
    ] = None,
) -> None:
    """Build a dataset snapshot (Parquet + manifest) from the configured source.

    The rows are validated against the contract first (the suite `validate` runs); bad data
    writes nothing: exit 1 when rows break a rule, 2 when the file is not a readable table.
    """
    import json

    from data_pipelines.ingest import build_snapshot

    paths = paths_of(ctx)
    folder = build_snapshot(
        paths,
        input_file=input_file,
        rows=rows,
        seed=seed,
        request=request,
        ignore_request=ignore_request,
        snapshots=snapshots,
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    window = manifest["time_window"]
    typer.echo(f"snapshot {manifest['snapshot_id']}: {manifest['rows']} rows")
    typer.echo(f"    folder:      {paths.relative(folder)}")
    typer.echo(f"    sha256:      {manifest['sha256']}")
    typer.echo(
        f"    time window: {window['start']} .. {window['end']}"
        if window["start"]
        else "    time window: unknown (no event_time column)"
    )


@app.command()
def validate(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help="A CSV/Parquet file or snapshot folder (default: the latest snapshot)."),
    ] = None,
    reports: Annotated[
        Path | None, typer.Option(help="Where Data Docs and the JSON result go (default: reports/).")
    ] = None,
) -> None:
    """Validate a dataset with Great Expectations; Data Docs in reports/."""
    from data_pipelines.validation import validate as run_validation

    paths = paths_of(ctx)
    outcome = run_validation(paths, data, reports)
    if outcome.data_docs:
        progress.note(f"Data Docs:   {paths.relative(outcome.data_docs)}")
    if outcome.result_path:
        progress.note(f"JSON result: {paths.relative(outcome.result_path)}")
    if not outcome.success:
        raise CheckFailed(outcome.summary())
    typer.echo(outcome.summary())


# --- model -------------------------------------------------------------------------------------


@app.command()
def train(
    ctx: typer.Context,
    snapshot: Annotated[
        str | None, typer.Option(help="Snapshot id, id prefix or folder (default: the latest).")
    ] = None,
) -> None:
    """Train, evaluate, export to ONNX, check parity and the policy gates."""
    from ml import tracking

    paths = paths_of(ctx)
    logger = tracking.start_logger(paths)  # idle until the run is handed over: it loads MLflow then
    from ml.pipeline import train as run_training

    report = run_training(paths, snapshot, logger)
    for gate in report.gates:
        typer.echo(f"  {'PASS' if gate.passed else 'FAIL'} {gate.name}: {gate.message}")
    if not report.passed:
        raise CheckFailed(
            "\n".join(
                [
                    *report.failures(),
                    f"model {report.version} failed the policy gates; it will not be registered",
                ]
            )
        )
    typer.echo(f"all gates passed: `make register` records {report.version} as a candidate")


@app.command()
def register(
    ctx: typer.Context,
    version: Annotated[str | None, typer.Option(help="A trained version other than the latest.")] = None,
    override: Annotated[
        str | None,
        typer.Option(help="Register a model whose gates failed, for this reason (kept in entry and card)."),
    ] = None,
) -> None:
    """Record the trained model in governance/registry.yaml and write its model card."""
    from governance import model_card, registry

    paths = paths_of(ctx)
    entry, new = registry.register(paths, version, override)
    if entry.override:
        typer.echo(f"warning: {entry.version} failed its gates; registered on override: {entry.override}")
    if new:
        typer.echo(f"registered {entry.version} as a candidate in {paths.relative(paths.registry)}")
    else:
        typer.echo(f"{entry.version} is already registered (stage {entry.stage}); refreshing its model card")
    card_path = model_card.write(entry, paths.cards, paths.policy, paths.contract)
    typer.echo(f"model card: {paths.relative(card_path)}")
    if entry.run is not None:
        from ml import tracking

        if tracking.enabled() and tracking.attach(paths, entry.run, card_path, "model_card"):
            typer.echo(f"model card added to MLflow run {entry.run.run_id}")


@app.command()
def card(ctx: typer.Context, version: Annotated[str, typer.Argument(help="A registered version.")]) -> None:
    """Rewrite the model card of a registered version."""
    from governance import model_card, registry

    paths = paths_of(ctx)
    card_path = model_card.write(
        registry.get(version, paths.registry), paths.cards, paths.policy, paths.contract
    )
    typer.echo(f"model card: {paths.relative(card_path)}")


@app.command()
def champion(
    ctx: typer.Context,
    docker: Annotated[str, typer.Option(envvar="DOCKER", help="Docker-compatible client.")] = "docker",
    optional: Annotated[
        bool, typer.Option("--optional", help="An unobtainable model is a warning, not an error.")
    ] = False,
) -> None:
    """Fetch the production model from its pinned image, so `train` re-scores it."""
    from governance.champion import fetch_champion

    fetch_champion(paths_of(ctx), docker, optional, say=progress.note)


# --- experiment tracking and tuning (MLflow, Optuna) ---------------------------------------------


@app.command()
def tune(
    ctx: typer.Context,
    trials: Annotated[int, typer.Option(envvar="TRIALS", min=1, help="Trials to add to the study.")] = 20,
    timeout: Annotated[
        float | None, typer.Option(envvar="TIMEOUT", min=1, help="Stop starting trials after N seconds.")
    ] = None,
    jobs: Annotated[int, typer.Option(envvar="JOBS", min=1, help="Trials run in parallel (threads).")] = 1,
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id (default: the latest).")] = None,
) -> None:
    """Search ml/search_space.yaml with Optuna; write the chosen settings into ml/params.yaml."""
    from ml.tune import tune as run_tuning

    paths = paths_of(ctx)
    outcome = run_tuning(paths, trials, timeout, jobs, snapshot)
    chosen = outcome.chosen
    typer.echo(
        f"study {outcome.study_name}: {len(outcome.trials)} trial(s), "
        f"{len(outcome.front)} on the Pareto front; chosen trial {chosen.number}: "
        f"{chosen.values[0]:.4f}, bias gap {chosen.values[1]:.4f}"
    )
    typer.echo(outcome.diff or f"{paths.relative(paths.params)} already holds the chosen settings")
    typer.echo(f"report: {paths.relative(outcome.report)} (Pareto front: {paths.relative(outcome.picture)})")


@app.command("track-sync")
def track_sync(ctx: typer.Context) -> None:
    """Copy the runs that fell back to the local store to the server in MLFLOW_TRACKING_URI."""
    from ml.tracking import sync

    synced = sync(paths_of(ctx), say=typer.echo)
    typer.echo(f"{len(synced)} run(s) synced" if synced else "no run is waiting for this server")


@app.command("track-wait")
def track_wait(ctx: typer.Context) -> None:
    """Wait for MLflow runs still being recorded in the background (before copying artifacts away)."""
    from ml.tracking import wait_all

    recorded = wait_all(paths_of(ctx))
    typer.echo(f"MLflow runs recorded for {', '.join(recorded)}" if recorded else "no recording was pending")


@app.command()
def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(envvar="PORT", min=1, max=65535, help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Serve the MLflow UI on the local tracking store (artifacts/mlflow)."""
    from ml.tracking import serve_ui

    code = serve_ui(paths_of(ctx), port, say=typer.echo)
    if code:
        raise typer.Exit(code)


# --- serving and packaging -----------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(envvar="PORT", min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Run the onnxruntime service (Open Inference Protocol v2 + /predict)."""
    from app.__main__ import main as serve_main
    from app.feedback import local_key

    paths = paths_of(ctx)
    os.environ["PORT"] = str(port)
    # The project's contract, policy and latest model (--root's), unless the environment names others.
    os.environ.setdefault("CONTRACT_PATH", str(paths.contract))
    os.environ.setdefault("POLICY_PATH", str(paths.policy))
    os.environ.setdefault("MODEL_PATH", str(paths.models / "latest"))
    # A workstation has no mounted secret: a key of its own under artifacts/ (made once, mode 0600),
    # so feedback tokens survive a restart. Deployments mount theirs (deploy/README.md).
    if not os.environ.get("FEEDBACK_KEY_FILE"):
        os.environ["FEEDBACK_KEY_FILE"] = str(local_key(paths.artifacts / "secrets" / "feedback.key"))
    code = serve_main()
    if code:
        raise typer.Exit(code)


@app.command()
def image(
    ctx: typer.Context,
    image: Annotated[str, typer.Option(help="Image repository, e.g. registry/owner/name.")],
    tag: Annotated[str, typer.Option(help="Image tag.")],
    base_image: Annotated[str, typer.Option(help="Base image (default: the Dockerfile's).")] = "",
    version: Annotated[str, typer.Option(help="Model version to package (default: the latest).")] = "latest",
    wheelhouse: Annotated[Path | None, typer.Option(help="Serving wheels for an offline build.")] = None,
    docker: Annotated[str, typer.Option(envvar="DOCKER", help="Docker-compatible client.")] = "docker",
    kind: Annotated[str, typer.Option(help="serve (the service) or batch (`mlops score`, Dask).")] = "serve",
) -> None:
    """Build the serving container image, or the batch image (`mlops score`, Dask) with --kind batch."""
    from deploy.image import build

    build(
        paths_of(ctx),
        image=image,
        tag=tag,
        base_image=base_image,
        version=version,
        wheelhouse=wheelhouse,
        docker=docker,
        kind=kind,
        say=typer.echo,
    )


@app.command("image-test")
def image_test(
    ctx: typer.Context,
    image: Annotated[str, typer.Option(help="Image reference, e.g. registry/name:tag.")],
    model_name: Annotated[str, typer.Option(envvar="MODEL_NAME", help="Served model name.")] = "",
    budget_mb: Annotated[
        float, typer.Option(envvar="IMAGE_SIZE_BUDGET_MB", help="Largest acceptable image size in MB.")
    ] = 300.0,
    docker: Annotated[str, typer.Option(envvar="DOCKER", help="Docker-compatible client.")] = "docker",
    port: Annotated[int, typer.Option(help="Host port (0: a free one).")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 60.0,
    skip_arbitrary_uid: Annotated[
        bool, typer.Option("--skip-arbitrary-uid", help="Skip the run under a random uid.")
    ] = False,
) -> None:
    """Run the image and check health, inference, non-root and read-only root."""
    from deploy.image_test import run

    failed = run(
        contract=paths_of(ctx).contract,
        image=image,
        model_name=model_name,
        budget_mb=budget_mb,
        docker=docker,
        port=port,
        timeout=timeout,
        skip_arbitrary_uid=skip_arbitrary_uid,
    )
    if failed:
        raise CheckFailed(f"image test of {image}: a check failed (see the FAIL lines above)")


@app.command("image-push")
def image_push(
    ctx: typer.Context,
    image: Annotated[str, typer.Option(help="Repository, e.g. ghcr.io/owner/project.")],
    tag: Annotated[str, typer.Option(help="Tag to push.")],
    docker: Annotated[str, typer.Option(envvar="DOCKER", help="Docker-compatible client.")] = "docker",
    output: Annotated[
        Path | None, typer.Option(help="Where the record goes (default: artifacts/image.json).")
    ] = None,
) -> None:
    """Push IMAGE:TAG and record its digest."""
    from deploy.push_image import push

    paths = paths_of(ctx)
    push(image, tag, docker, output or paths.image_record, say=typer.echo)


# --- monitoring ----------------------------------------------------------------------------------


@app.command()
def drift(
    ctx: typer.Context,
    capture_uri: CaptureUri = None,
    since: Since = None,
    until: Until = None,
    days: Days = None,
    last_n: Annotated[int | None, typer.Option(min=1, help="Window: the newest N predictions.")] = None,
    detector: Annotated[
        str | None, typer.Option(help="alibi or scipy (default: DETECTOR or monitoring.yaml).")
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="Snapshot to compare with instead of the champion's.")
    ] = None,
    no_history: Annotated[
        bool, typer.Option("--no-history", help="Do not append to the monitoring history.")
    ] = False,
) -> None:
    """Drift, performance and bias checks on captured rows; the retraining decision."""
    from monitoring.snapshot_worker import SnapshotWorker

    with SnapshotWorker() as worker:  # first of all: it imports on the other core while this one does
        from monitoring.check import Options, run
        from monitoring.config import backend_name

        paths = paths_of(ctx)
        options = Options(
            uri=capture_uri,
            since=since,
            until=until,
            last_n=last_n,
            days=days,
            reference=reference,
            record=not no_history,
            detector=backend_name(detector, "--detector") if detector else None,
        )
        summary = run(paths, options, worker)
    typer.echo(f"decision: {summary.decision.status}")
    for reason in summary.decision.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"report: {paths.relative(paths.drift_reports / 'report.html')}")


@app.command("retrain-pr")
def retrain_pr(
    ctx: typer.Context,
    summary: Annotated[
        Path | None, typer.Option(help="drift.json of the run (default: the latest report).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write the would-be pull request to reports/drift/.")
    ] = False,
    remote: Annotated[str, typer.Option(help="Git remote to push the branch to.")] = "origin",
    retries: Annotated[int, typer.Option(min=0, help="Retries on 5xx answers and rate limits.")] = 5,
    backoff: Annotated[float, typer.Option(min=0, help="Backoff factor in seconds between retries.")] = 1.0,
    max_data_mb: Annotated[
        float,
        typer.Option(
            envvar="RETRAIN_MAX_DATA_MB", min=0.001, help="Size limit of the committed snapshot (MB)."
        ),
    ] = 50.0,
) -> None:
    """Open or update the retraining pull request when the decision says retrain."""
    from monitoring import retrain_pr as bot

    bot.run(
        paths_of(ctx),
        summary_path=summary,
        dry_run=dry_run,
        remote=remote,
        retries=retries,
        backoff=backoff,
        max_data_mb=max_data_mb,
        say=typer.echo,
    )


@app.command()
def alert(
    ctx: typer.Context,
    summary: Annotated[
        Path | None, typer.Option(help="drift.json of the run (default: the latest report, if any).")
    ] = None,
    job: Annotated[
        list[str] | None, typer.Option(help="A job's result, job=result (repeat): any failure alerts.")
    ] = None,
    run_url: Annotated[str, typer.Option(envvar="RUN_URL", help="The run to link from the issue.")] = "",
) -> None:
    """Open or update one issue when monitoring is blocked (no labels) or failed; close it when healthy."""
    from monitoring import alerts

    alerts.run(paths_of(ctx), summary, alerts.parse_results(job or []), run_url, say=typer.echo)


# --- batch scoring and large windows (embedded, or on Dask: monitoring/engine.py) ---------------


@app.command()
def score(
    ctx: typer.Context,
    data: Annotated[str, typer.Option(help="Parquet/CSV file, folder or fsspec URL to score.")],
    out: Annotated[str, typer.Option(help="Output folder or URL: predictions/, rejects/, summary.")],
    engine: Annotated[
        str | None,
        typer.Option(
            envvar="ENGINE",
            help="embedded, dask-local or dask (default: embedded, or dask "
            "when DASK_SCHEDULER_ADDRESS is set).",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(envvar="MODEL", help="An ONNX file instead of the registry's champion.")
    ] = None,
    model_version: Annotated[
        str | None,
        typer.Option(
            envvar="BATCH_MODEL_VERSION",
            help="The registry's version of MODEL, written into every row (default: file:<its name>).",
        ),
    ] = None,
    key: Annotated[str | None, typer.Option(help="An input column copied to every output row.")] = None,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per record batch.")] = 65_536,
    force: Annotated[bool, typer.Option("--force", help="Replace the parts of an earlier run.")] = False,
) -> None:
    """Batch predictions with the ONNX model; rows that break the contract go to rejects/ with the reason."""
    from monitoring import batch_score
    from monitoring.engine import choose

    summary = batch_score.run(
        paths_of(ctx),
        data,
        out,
        choose(engine),
        model,
        key,
        batch_rows=batch_rows,
        overwrite=force,
        model_version=model_version,
    )
    typer.echo(
        f"scored {summary.scored} of {summary.rows} rows ({summary.rejected} rejected) in "
        f"{summary.seconds:.1f}s, {summary.rows_per_second:,.0f} rows/s: {summary.output}"
    )


@app.command()
def compact(
    ctx: typer.Context,
    capture_uri: CaptureUri = None,
    before: Annotated[
        str | None, typer.Option(help="Compact days before this date (YYYY-MM-DD; default: today, UTC).")
    ] = None,
) -> None:
    """Rewrite each finished day of the capture as one Parquet file, so large windows read fast."""
    from monitoring import compact as compaction

    for day in compaction.run(capture_uri, before):
        typer.echo(f"{day.day}: {day.files} file(s), {day.rows} line(s) -> {day.parquet}")


# --- governance bots -----------------------------------------------------------------------------


@app.command("pr-comment")
def pr_comment(ctx: typer.Context) -> None:
    """Create or update the pull request's one results comment (PR_NUMBER, JOB_RESULTS)."""
    from governance.pr_comment import publish

    typer.echo(f"pr-comment: {publish(paths_of(ctx).root)}")


@app.command()
def licences(ctx: typer.Context) -> None:
    """Check the licences of the serving image's and the training environment's packages."""
    from governance.core import policy as policy_file
    from governance.licences import run

    paths = paths_of(ctx)
    run(paths, policy_file.load(paths.policy).licences, say=typer.echo)


@app.command("pin-staging")
def pin_staging(
    ctx: typer.Context,
    image_record: Annotated[
        Path | None, typer.Option(help="The push record (default: artifacts/image.json).")
    ] = None,
) -> None:
    """GitOps PR: the pushed image's version becomes staging, its digest pinned there."""
    from governance.gitops import pin_staging as stage

    stage(paths_of(ctx), image_record, say=typer.echo)


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Option(envvar="VERSION", help="Registry version now in staging.")],
    evidence: Annotated[
        Path | None,
        typer.Option(help="Markdown for the PR body (default: reports/compare/ when it judged VERSION)."),
    ] = None,
) -> None:
    """GitOps PR: a staging version becomes production, its digest pinned there."""
    from governance.gitops import promote as move

    move(paths_of(ctx), version, say=typer.echo, evidence=evidence)


# --- champion vs challenger, and rollback (issue 15) ---------------------------------------------

HOLD_EXIT = 3  # `compare`: not enough evidence yet (neither a yes nor a no)


@app.command()
def compare(
    ctx: typer.Context,
    capture_uri: CaptureUri = None,
    since: Since = None,
    until: Until = None,
    days: Days = None,
    version: Annotated[
        str | None, typer.Option(help="The challenger's version (needed when the window holds several).")
    ] = None,
) -> None:
    """Champion vs the challenger scored in shadow, on the same live rows; promote, hold or reject.

    Exit 0: promote (every `promotion:` rule of governance/policy.yaml holds); 1: reject (a rule is
    broken); 3: hold (too few rows or labels yet); 2: bad input. Reports in reports/compare/.
    """
    from monitoring.compare import Options, compare_reports, run

    paths = paths_of(ctx)
    comparison = run(paths, Options(uri=capture_uri, since=since, until=until, days=days, version=version))
    typer.echo(
        f"verdict: {comparison.verdict} ({comparison.subject_version} vs {comparison.baseline_version})"
    )
    for reason in comparison.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"report: {paths.relative(compare_reports(paths) / 'report.html')}")
    if comparison.verdict == "reject":
        raise CheckFailed(f"challenger {comparison.subject_version} is rejected by the promotion policy")
    if comparison.verdict == "hold":
        raise typer.Exit(HOLD_EXIT)


@app.command("post-deploy-check")
def post_deploy_check(
    ctx: typer.Context,
    capture_uri: CaptureUri = None,
    since: Annotated[
        str | None, typer.Option(help="Live window start (default: the champion's promoted_at).")
    ] = None,
    until: Until = None,
) -> None:
    """The production model live vs its shadow phase: score shift and labelled metric against the policy.

    Exit 0: healthy or not enough data yet; 1: the policy is breached (`make rollback
    ROLLBACK_ARGS="--check reports/post_deploy/check.json"` opens the rollback PR); 2: bad input.
    """
    from monitoring.post_deploy import Options, post_deploy_reports, run

    paths = paths_of(ctx)
    comparison = run(paths, Options(uri=capture_uri, since=since, until=until))
    typer.echo(f"verdict: {comparison.verdict} ({comparison.subject_version or 'nothing in production'})")
    for reason in comparison.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"report: {paths.relative(post_deploy_reports(paths) / 'report.html')}")
    if comparison.verdict == "rollback":
        raise CheckFailed(
            f"production version {comparison.subject_version} breaches the promotion policy live"
        )


@app.command()
def rollback(
    ctx: typer.Context,
    version: Annotated[
        str | None,
        typer.Option(envvar="VERSION", help="Version to restore (default: the previous production one)."),
    ] = None,
    check: Annotated[
        Path | None, typer.Option(help="A post-deploy check's record: open the PR only if it says rollback.")
    ] = None,
    evidence: Annotated[Path | None, typer.Option(help="Markdown to add to the PR body.")] = None,
) -> None:
    """GitOps PR: production goes back to the previous production digest (or VERSION's)."""
    from governance.gitops import rollback as restore

    restore(paths_of(ctx), version=version, check=check, evidence=evidence, say=typer.echo)


def main(argv: list[str] | None = None) -> int:
    """The console script: run one subcommand and turn its outcome into the exit-code convention."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="mlops", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return 2
    except typer.TyperException as problem:  # a usage mistake: typer names the option and the rule
        show = getattr(problem, "show", None)
        if show is not None:
            show()
        else:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except ProjectError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return problem.exit_code
    # Without standalone mode, a command's `raise typer.Exit(code)` comes back as the return value.
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
