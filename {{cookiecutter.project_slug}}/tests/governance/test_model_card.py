"""`register` writes a model card from the registry entry: intended use, data, metrics, bias,
limitations and lineage, with the same numbers as the registry, laid out by the template file."""

import json
import re
from xml.etree import ElementTree

import pytest
import yaml

from governance import model_card, registry
from governance.cli import main
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.policy import PolicyError
from governance.core.records import RegistryEntry
from governance.core.tasks import BINARY, DEFAULT_PRIMARY, METRICS, MULTICLASS, REGRESSION, TASKS, metrics_of
from governance.core.text import fmt
from ml.pipeline import train
from tests.support.training import PROJECT, copy_workspace, make_task_workspace, task_data

TEMPLATE = PROJECT / "governance" / "templates" / "model_card.md.j2"


@pytest.fixture(scope="module")
def registered(trained_workspace, tmp_path_factory):
    """(paths, version): a private copy of the trained workspace where `mlops register` ran."""
    root, version = trained_workspace
    paths = Paths(copy_workspace(root, tmp_path_factory.mktemp("registered") / "project"))
    assert main(["--root", str(paths.root), "register"]) == 0
    return paths, version


def card_of(paths, version):
    return (paths.cards / f"{version}.md").read_text()


def test_register_adds_a_candidate_whose_sha256_matches_the_artifact(registered):
    paths, version = registered
    entry = registry.get(version, paths.registry)
    assert entry.stage == "candidate"
    registry.verify_artifact(entry, paths.root)
    assert entry.contract_sha256 == load_contract(paths.contract).digest
    manifest = json.loads((paths.snapshots / entry.data.snapshot_id / "manifest.json").read_text())
    assert entry.data.sha256 == manifest["sha256"]
    assert entry.code_commit == "unknown" or len(entry.code_commit) in (40, 64)


def test_register_twice_is_a_no_op(registered, capsys):
    paths, _ = registered
    before = paths.registry.read_bytes()
    assert main(["--root", str(paths.root), "register"]) == 0
    assert "already registered" in capsys.readouterr().out
    assert paths.registry.read_bytes() == before


def test_register_without_a_trained_model_says_to_train(tmp_path, write_registry, capsys):
    write_registry(tmp_path, [])
    assert main(["--root", str(tmp_path), "register"]) == 2
    assert "make train" in capsys.readouterr().err


def test_the_card_has_every_section_of_its_template_in_order(registered):
    paths, version = registered
    text = card_of(paths, version)
    headings = re.findall(r"^## .+$", TEMPLATE.read_text(), flags=re.MULTILINE)
    assert len(headings) >= 6
    positions = [text.find(f"\n{heading}\n") for heading in headings]
    assert -1 not in positions, [h for h, at in zip(headings, positions, strict=True) if at == -1]
    assert positions == sorted(positions)


def test_the_card_shows_the_registered_numbers_in_the_one_number_format(registered, example_contract):
    paths, version = registered
    entry = registry.get(version, paths.registry)
    text = card_of(paths, version)
    for name, value in entry.metrics.items():
        assert f"| {name} | {fmt(value)} |" in text
    assert any(isinstance(value, float) and fmt(value) != str(value) for value in entry.metrics.values())
    for name, gate in entry.gates.items():
        cells = (name, fmt(gate.passed), fmt(gate.value), fmt(gate.threshold), fmt(gate.margin))
        assert "| " + " | ".join(cells) + " |" in text
    assert f"labels identical: {fmt(entry.parity.labels_equal)}" in text
    assert entry.artifact.sha256 in text
    assert entry.data.sha256 in text
    for group in example_contract.sensitive.categories:
        assert f"| {group} |" in text
    for feature in example_contract.feature_names:
        assert f"| {feature} |" in text


def tables(markdown):
    """The Markdown tables of a document: lists of consecutive lines that start with a pipe."""
    found, current = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def test_a_pipe_inside_a_value_never_breaks_a_card_table(tmp_path, make_entry):
    contract = tmp_path / "contract.yaml"
    contract.write_text(
        yaml.safe_dump(
            {
                "target": {"name": "defaulted"},
                "sensitive_attribute": {"name": "group", "categories": ["x|y", "z"]},
                "features": [
                    {"name": "amount", "kind": "numeric", "min": 0, "max": 10},
                    {"name": "channel", "kind": "categorical", "categories": ["web|app", "branch"]},
                ],
            }
        )
    )
    raw = make_entry()
    raw["contract_sha256"] = load_contract(contract).digest
    raw["bias"] = {
        "sensitive_attribute": "group",
        "metric": "selection_rate",
        "largest_gap": 0.1,
        "by_group": {"x|y": {"selection_rate": 0.5, "count": 10}, "z": {"selection_rate": 0.4, "count": 12}},
    }
    text = model_card.render(RegistryEntry.model_validate(raw), Paths(PROJECT).policy, contract)
    assert "web\\|app" in text and "x\\|y" in text  # the values are there, escaped
    unescaped = re.compile(r"(?<!\\)\|")
    for table in tables(text):
        header = len(unescaped.findall(table[0]))
        assert [len(unescaped.findall(row)) for row in table] == [header] * len(table), table


def test_the_card_uses_the_policy_statements(registered, tmp_path):
    paths, version = registered
    raw = yaml.safe_load(paths.policy.read_text())
    raw["model_card"] = {
        "intended_use": "Rank applications for manual review.",
        "out_of_scope": "Automated rejection.",
        "limitations": ["Synthetic data only."],
    }
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(raw))
    text = model_card.render(registry.get(version, paths.registry), policy, paths.contract)
    assert "Rank applications for manual review." in text
    assert "Out of scope: Automated rejection." in text
    assert "- Synthetic data only." in text
    assert "performance on other populations is unknown" not in text  # the defaults are not quoted


def test_a_broken_policy_is_refused_rather_than_quoted_with_default_statements(registered, tmp_path):
    paths, version = registered
    policy = tmp_path / "policy.yaml"
    policy.write_text("model_card:\n  intended_use: Rank applications for manual review.\n")
    with pytest.raises(PolicyError, match="field 'model' field required"):
        model_card.render(registry.get(version, paths.registry), policy, paths.contract)


def test_card_command_rewrites_a_card_and_rejects_unknown_versions(registered, capsys):
    paths, version = registered
    card = paths.cards / f"{version}.md"
    before = card.read_text()
    card.unlink()
    assert main(["--root", str(paths.root), "card", version]) == 0
    assert card.read_text() == before
    assert main(["--root", str(paths.root), "card", "no-such-version"]) == 2
    assert "no-such-version" in capsys.readouterr().err


# --- every task: the card states it, gives each metric's direction and draws its picture -----------


@pytest.fixture(scope="module", params=TASKS)
def task_card(request, tmp_path_factory):
    """(task, paths, version) after `train` + `register` on the task's real dataset."""
    task = request.param
    paths = Paths(make_task_workspace(tmp_path_factory.mktemp(f"card-{task}"), task))
    report = train(paths)
    assert report.passed, report.failures()
    assert main(["--root", str(paths.root), "register"]) == 0
    return task, paths, report.version


def test_the_card_states_the_task_and_each_metrics_direction(task_card):
    task, paths, version = task_card
    entry = registry.get(version, paths.registry)
    text = card_of(paths, version)
    assert f"| Task | {task} |" in text
    for name in metrics_of(task):
        assert f"| {name} | {fmt(entry.metrics[name])} | {METRICS[name].direction} |" in text


@pytest.mark.parametrize("task_card", [BINARY, MULTICLASS], indirect=True)
def test_a_classifier_card_shows_per_class_results_and_its_confusion_matrix(task_card):
    task, paths, version = task_card
    entry = registry.get(version, paths.registry)
    text = card_of(paths, version)
    target = task_data(task).contract.target
    for key in target.class_keys:
        report = entry.diagnostics.per_class[key]
        assert f"| {key} | {fmt(report.precision)} | {fmt(report.recall)} | {report.support} |" in text
    assert f"]({version}-confusion.svg)" in text
    svg = ElementTree.parse(paths.cards / f"{version}-confusion.svg").getroot()  # noqa: S314 (our own file)
    texts = [node.text for node in svg.iter("{http://www.w3.org/2000/svg}text")]
    for row in entry.diagnostics.confusion:
        for count in row:
            assert str(count) in texts
    assert all(texts.count(key) == 2 for key in target.class_keys)  # a row and a column label each
    assert not (paths.cards / f"{version}-residuals.svg").exists()


@pytest.mark.parametrize("task_card", [REGRESSION], indirect=True)
def test_a_regressor_card_shows_its_errors_and_residual_plot(task_card):
    _, paths, version = task_card
    entry = registry.get(version, paths.registry)
    text = card_of(paths, version)
    assert (
        f"RMSE {fmt(entry.metrics['rmse'])}, MAE {fmt(entry.metrics['mae'])}, R² {fmt(entry.metrics['r2'])}"
        in text
    )
    assert f"]({version}-residuals.svg)" in text and "confusion" not in text.lower()
    svg = ElementTree.parse(paths.cards / f"{version}-residuals.svg").getroot()  # noqa: S314 (our own file)
    boxes = svg.findall("{http://www.w3.org/2000/svg}rect")[1:]
    assert len(boxes) == len(entry.diagnostics.residuals.bins)


def test_the_card_picture_is_the_same_bytes_every_time(task_card):
    _, paths, version = task_card
    picture = next(paths.cards.glob(f"{version}-*.svg"))
    before = picture.read_bytes()
    picture.unlink()
    assert main(["--root", str(paths.root), "card", version]) == 0
    assert picture.read_bytes() == before


# --- Explanations: importance table and pictures, partial dependence, candidate beside champion ----

SVG = "{http://www.w3.org/2000/svg}"


def test_the_card_explains_the_model_in_a_table_and_two_pictures(task_card):
    task, paths, version = task_card
    entry = registry.get(version, paths.registry)
    found = entry.explanations
    assert found is not None and found.metric == DEFAULT_PRIMARY[task]
    text = card_of(paths, version)
    for item in found.candidate.features:
        assert f"| {item.feature} | {fmt(item.mean)} | — | — |" in text  # no champion in this workspace
    assert f"]({version}-importance.svg)" in text and f"]({version}-dependence.svg)" in text
    bars = ElementTree.parse(paths.cards / f"{version}-importance.svg").getroot()  # noqa: S314 (our own file)
    shown = min(len(found.candidate.features), model_card.MAX_BARS)
    assert len(bars.findall(f"{SVG}rect")) == 1 + 1 + shown  # the page, the legend's key, one bar per column
    plots = ElementTree.parse(paths.cards / f"{version}-dependence.svg").getroot()  # noqa: S314 (our own file)
    assert len(plots.findall(f"{SVG}polyline")) == sum(
        len(curve.outputs) for curve in found.dependence if curve.kind == "numeric"
    )
    labels = [node.text for node in plots.iter(f"{SVG}text")]
    assert [curve.feature for curve in found.dependence] == [
        label for label in labels if label in {curve.feature for curve in found.dependence}
    ]


def test_every_explanation_picture_is_the_same_bytes_on_every_rewrite(task_card):
    _, paths, version = task_card
    pictures = sorted(paths.cards.glob(f"{version}-*.svg"))
    assert {path.name for path in pictures} >= {f"{version}-importance.svg", f"{version}-dependence.svg"}
    before = {path: path.read_bytes() for path in pictures}
    for path in pictures:
        path.unlink()
    assert main(["--root", str(paths.root), "card", version]) == 0
    assert {path: path.read_bytes() for path in pictures} == before


def test_the_card_sets_the_champion_beside_the_candidate(tmp_path, make_entry, champion_explanations):
    raw = make_entry()
    found = champion_explanations
    entry = RegistryEntry.model_validate({**raw, "explanations": found.model_dump(mode="json")})
    text = model_card.render(entry, Paths(PROJECT).policy, tmp_path / "no-contract.yaml")
    assert "| age | 0.05 | 0.02 | up 1 |" in text
    assert "| income | 0.03 | 0.06 | down 1 |" in text
    assert "| region | -0.001 | 0 | same |" in text
    assert "Champion `20231201000000-00000000` was scored on the same rows with the same shuffles." in text
    assert "(champion dashed)" in text
    bars = ElementTree.fromstring(model_card.importance_svg(found))  # noqa: S314 (our own text)
    fills = [node.get("fill") for node in bars.findall(f"{SVG}rect")[3:]]  # after page and legend keys
    assert fills == [model_card.CANDIDATE_COLOUR, model_card.CHAMPION_COLOUR] * 3
    assert "champion 20231201000000-00000000" in [node.text for node in bars.iter(f"{SVG}text")]
    plots = ElementTree.fromstring(model_card.dependence_svg(found))  # noqa: S314 (our own text)
    lines = plots.findall(f"{SVG}polyline")
    assert [line.get("stroke-dasharray") for line in lines] == [None, "5 3"]  # the champion dashed
    assert len(plots.findall(f"{SVG}circle")) == 4  # region: two categories, candidate and champion


def test_a_card_of_a_model_without_explanations_says_so(tmp_path, make_entry):
    entry = RegistryEntry.model_validate(make_entry())
    text = model_card.render(entry, Paths(PROJECT).policy, tmp_path / "no-contract.yaml")
    assert "## Explanations\n\nNo explanations were recorded for this model" in text
    assert model_card.explanation_svgs(entry) == {}
