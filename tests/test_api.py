"""The public API: everything in kdlab.__all__ exists, and every name is exercised by some test file."""
from pathlib import Path

import pytest

import kdlab

TESTS = {path.name: path.read_text() for path in Path(__file__).parent.glob("test_*.py") if path.name != "test_api.py"}


@pytest.mark.parametrize("name", kdlab.__all__)
def test_public_name_exists_and_is_tested(name):
    assert hasattr(kdlab, name)
    assert any(name in text for text in TESTS.values()), f"no test file mentions kdlab.{name}"
