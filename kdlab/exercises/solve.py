"""`python -m kdlab.exercises.solve NOTEBOOKS SOLUTIONS OUT`: the chapters with every exercise cell solved.

An exercise cell is a code cell tagged "exercise" that defines functions for the learner to fill in. Each such
function is replaced by the function of the same name in SOLUTIONS/<chapter>.py; the rest of the chapter is
copied unchanged into OUT/<chapter>.ipynb, so `make test` runs the course as a learner who solved it would.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import nbformat


def exercise_functions(source):
    """The names of the functions a cell's source defines at top level, in order."""
    return [node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]


def _solutions(path):
    """{function name: its source text} of a solutions file."""
    text = path.read_text()
    return {node.name: ast.get_source_segment(text, node, padded=False)
            for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}


def is_exercise(cell):
    """True for a code cell tagged "exercise"."""
    return cell.cell_type == "code" and "exercise" in cell.metadata.get("tags", [])


def solve_notebook(notebook, solutions_folder):
    """The notebook (nbformat) with each exercise function replaced by its solution; ValueError if one is missing."""
    book = nbformat.read(notebook, as_version=4)
    cells = [cell for cell in book.cells if is_exercise(cell)]
    if not cells:
        return book
    path = Path(solutions_folder) / f"{Path(notebook).stem}.py"
    if not path.exists():
        raise ValueError(f"{notebook} has exercises but {path} does not exist")
    solutions = _solutions(path)
    for cell in cells:
        names = exercise_functions(cell.source)
        missing = [name for name in names if name not in solutions]
        if missing or not names:
            raise ValueError(f"{path} must define {', '.join(missing) or 'the functions of every exercise cell'} "
                             f"for {Path(notebook).name}")
        cell.source = "\n\n\n".join(solutions[name] for name in names)
    return book


def main(argv=None):
    """Write the solved copy of every chapter in NOTEBOOKS into OUT."""
    parser = argparse.ArgumentParser(prog="python -m kdlab.exercises.solve", description=__doc__)
    parser.add_argument("notebooks", help="folder of the chapters (notebooks/)")
    parser.add_argument("solutions", help="folder of the solutions, one <chapter>.py each (solutions/)")
    parser.add_argument("out", help="folder to write the solved chapters to")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.ipynb"):  # a chapter renamed or removed since the last run
        stale.unlink()
    for notebook in sorted(Path(args.notebooks).glob("*.ipynb")):
        nbformat.write(solve_notebook(notebook, args.solutions), out / notebook.name)


if __name__ == "__main__":
    main()
