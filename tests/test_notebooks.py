"""The chapters' shared conventions, and chapter 7 run through papermill on the digits data set."""
import ast
import re
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO = re.search(r"https://github\.com/[\w-]+/[\w-]+", (ROOT / "README.md").read_text()).group(0)


def _read(path):
    return nbformat.read(path, as_version=4)


def test_the_ten_chapters_are_there():
    assert [p.stem[:2] for p in CHAPTERS] == ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_opens_with_badge_setup_and_parameters(path):
    cells = _read(path).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert f"colab.research.google.com/github/{REPO.removeprefix('https://github.com/')}/blob/main/notebooks/" \
           f"{path.name}" in cells[0].source
    setup = cells[1].source
    assert setup == _read(CHAPTERS[0]).cells[1].source, "every chapter uses the same setup cell"
    assert f"kdlab @ git+{REPO}" in setup and 'if "google.colab" in sys.modules' in setup
    assert "torch.cuda.is_available()" in setup and "assert" not in setup
    assert "parameters" in cells[2].metadata.get("tags", []) and 'dataset: str = "' in cells[2].source


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_its_type(path):
    assigned = [node.target.id for node in ast.parse(_read(path).cells[2].source).body]
    listed = papermill.inspect_notebook(str(path))  # what papermill --help-notebook prints
    assert list(listed) == assigned
    assert all(p["inferred_type_name"] in ("str", "int", "float", "list") for p in listed.values())


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_list_parameter_goes_through_list_parameter(path):
    cells = _read(path).cells
    lists = [p for p, info in papermill.inspect_notebook(str(path)).items() if info["inferred_type_name"] == "list"]
    for name in lists:
        assert f'{name} = kdlab.list_parameter({name}, "{name}"' in cells[3].source


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_stored_without_outputs(path):
    for cell in _read(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_chapter_7_runs_under_papermill_on_digits(tmp_path):
    papermill.execute_notebook(str(ROOT / "notebooks" / "07_full_pipeline.ipynb"), str(tmp_path / "07.ipynb"),
                               parameters={"dataset": "digits", "sensitivities": "[1.0, 2.0]"},  # as -p gives it
                               cwd=str(tmp_path), progress_bar=False,
                               kernel_name="python3")
    executed = _read(tmp_path / "07.ipynb")
    assert executed.cells[3].metadata.get("tags") == ["injected-parameters"]
    assert not any(o.get("output_type") == "error" for c in executed.cells if c.cell_type == "code"
                   for o in c.outputs)
