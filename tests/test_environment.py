import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_what_the_makefile_installs():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert "pip" in env["dependencies"] and pip_sections == [["-e .[dev]"]]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'pip install -e "\.\[dev\]"', makefile)


def test_requirements_are_minimum_versions_never_pins():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert requirements and all(">=" in r and "==" not in r and "<" not in r for r in requirements)
    names = {re.split("[<>=]", r)[0] for r in project["dependencies"]}
    assert {"torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "tqdm", "mlxtend", "scikit-learn"} <= names


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in (ROOT / "README.md").read_text()
