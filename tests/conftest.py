"""Shared fixtures: the bundled data sets, loaded once per session."""
import pytest
import torch

import kdlab

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def mnist5k():
    return kdlab.load_dataset("mnist5k")


@pytest.fixture(scope="session")
def digits():
    return kdlab.load_dataset("digits")
