"""Documents are rendered from the template files: HTML escapes what it shows, Markdown tables hold."""

import shutil

import pytest

from governance import documents
from governance.core.text import fmt
from tests.support.training import PROJECT

OPEN, CLOSE = "{" * 2, "}" * 2  # Jinja2 delimiters, spelled so that cookiecutter leaves this file alone


@pytest.fixture
def templates(tmp_path):
    """A private copy of the project's template folder, free to add templates to."""
    folder = tmp_path / "templates"
    shutil.copytree(PROJECT / "governance" / "templates", folder)
    return folder


def test_html_templates_escape_captured_values(templates):
    (templates / "page.html.j2").write_text(f"<p>{OPEN} value {CLOSE}</p>")
    html = documents.environment(templates).get_template("page.html.j2").render(value="<script>x</script>")
    assert html == "<p>&lt;script&gt;x&lt;/script&gt;</p>"


def test_markdown_templates_keep_text_as_written(templates):
    (templates / "note.md.j2").write_text(f"{OPEN} value {CLOSE}")
    text = documents.environment(templates).get_template("note.md.j2").render(value="a <b> & c")
    assert text == "a <b> & c"


@pytest.mark.parametrize("value", [0.812345678, 1234567.0, True, False, None, 3, "text"])
def test_the_fmt_filter_is_the_one_number_format(templates, value):
    (templates / "number.md.j2").write_text(f"{OPEN} value | fmt {CLOSE}")
    assert documents.environment(templates).get_template("number.md.j2").render(value=value) == fmt(value)


def test_a_table_cell_escapes_pipes_and_newlines():
    assert documents.cell("a|b\nc") == "a\\|b c"
    assert documents.cell(0.812345678) == fmt(0.812345678)
