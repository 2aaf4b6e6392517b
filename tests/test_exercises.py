"""The exercise machinery: solved chapters, stubs the checks turn away, and solutions every check accepts."""
import ast
import importlib.util
from pathlib import Path

import nbformat
import pytest

import kdlab
from kdlab.exercises import ExerciseError
from kdlab.exercises.solve import exercise_functions, is_exercise, main, solve_notebook

ROOT = Path(__file__).parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _exercises():
    """(chapter, exercise cell, the code cell after it) for every exercise cell of the course."""
    found = []
    for path in CHAPTERS:
        cells = nbformat.read(path, as_version=4).cells
        for i, cell in enumerate(cells):
            if is_exercise(cell):
                after = next(c for c in cells[i + 1:] if c.cell_type == "code")
                found.append(pytest.param(path, cell, after, id=f"{path.stem}:{exercise_functions(cell.source)[0]}"))
    return found


EXERCISES = _exercises()


def _check_of(after):
    """(the kdlab.exercises check the cell calls, the name of the function it passes)."""
    call = ast.parse(after.source).body[0].value
    assert ast.unparse(call.func).startswith("kdlab.exercises.check_"), "an exercise cell is followed by its check"
    return getattr(kdlab.exercises, call.func.attr), call.args[0].id


def _solution(path, name):
    """The function `name` of solutions/<chapter>.py."""
    spec = importlib.util.spec_from_file_location(path.stem, ROOT / "solutions" / f"{path.stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.mark.parametrize("path, cell, after", EXERCISES)
def test_the_stub_is_turned_away_as_unfinished(path, cell, after):
    check, name = _check_of(after)
    assert name in exercise_functions(cell.source)
    namespace = {}
    exec(compile(cell.source, str(path), "exec"), namespace)  # the stub as the learner finds it
    with pytest.raises(ExerciseError, match=r"is not done yet: replace `raise NotImplementedError`"):
        check(namespace[name])


@pytest.mark.parametrize("path, cell, after", EXERCISES)
def test_the_solution_passes_its_check(path, cell, after, capsys):
    check, name = _check_of(after)
    check(_solution(path, name))
    assert ": correct." in capsys.readouterr().out


def test_solve_replaces_each_exercise_function_and_keeps_the_rest(tmp_path):
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("def f(a):\n    raise NotImplementedError", metadata={"tags": ["exercise"]}),
        nbformat.v4.new_code_cell("kdlab.exercises.check_something(f)")])
    nbformat.write(book, tmp_path / "01_x.ipynb")
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "01_x.py").write_text("import math\n\n\ndef g():\n    pass\n\n\ndef f(a):\n    return a\n")
    main([str(tmp_path), str(tmp_path / "solutions"), str(tmp_path / "out")])
    solved = nbformat.read(tmp_path / "out" / "01_x.ipynb", as_version=4).cells
    assert [c.source for c in solved] == ["x = 1", "def f(a):\n    return a", "kdlab.exercises.check_something(f)"]


def test_solve_refuses_a_chapter_without_its_solutions(tmp_path):
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def f():\n    raise NotImplementedError",
                                                                     metadata={"tags": ["exercise"]})])
    nbformat.write(book, tmp_path / "02_y.ipynb")
    with pytest.raises(ValueError, match=r"02_y\.ipynb has exercises but .*02_y\.py does not exist"):
        solve_notebook(tmp_path / "02_y.ipynb", tmp_path)
    (tmp_path / "02_y.py").write_text("def other():\n    pass\n")
    with pytest.raises(ValueError, match=r"02_y\.py must define f for 02_y\.ipynb"):
        solve_notebook(tmp_path / "02_y.ipynb", tmp_path)


def test_a_check_explains_a_crash_and_a_non_function():
    def broken(*args):
        return 1 / 0

    with pytest.raises(ExerciseError, match=r"^exercise 1\.1: your function raised ZeroDivisionError"):
        kdlab.exercises.check_distillation_loss(broken)
    with pytest.raises(ExerciseError, match=r"^exercise 1\.1: pass your function itself, got float"):
        kdlab.exercises.check_distillation_loss(0.5)
