"""Seed lists, mean ± sd and the paired t interval, against numpy and scipy."""
import math

import numpy as np
import pytest
from scipy import stats

from kdlab.seeds import environment, mean_sd, paired_interval, parse_seeds, t_quantile


@pytest.mark.parametrize("text, seeds", [("3", [3]), ("0-4", [0, 1, 2, 3, 4]), ("0,2,7", [0, 2, 7]),
                                         ("0-1,5", [0, 1, 5]), ([4, 2], [4, 2])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "0-", "-1", "1,1", [], [0, -1], [0.5], 3])
def test_parse_seeds_rejects(text):
    with pytest.raises(ValueError, match="seeds must"):
        parse_seeds(text)


def test_mean_sd_is_numpy_with_ddof_1():
    values = [0.95, 0.96, 0.94, 0.97]
    assert mean_sd(values) == {"mean": pytest.approx(np.mean(values)), "sd": pytest.approx(np.std(values, ddof=1)),
                               "n": 4}
    assert mean_sd([0.5])["sd"] == 0.0
    with pytest.raises(ValueError, match="values must be a non-empty list"):
        mean_sd([])


def test_paired_interval_is_scipys_t_interval():
    a, b = [0.97, 0.965, 0.972, 0.968, 0.97], [0.96, 0.962, 0.958, 0.961, 0.957]
    diff = np.subtract(a, b)
    low, high = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
    result = paired_interval(a, b)
    assert result["mean"] == pytest.approx(diff.mean())
    assert (result["low"], result["high"]) == (pytest.approx(low), pytest.approx(high))
    assert t_quantile(0.95, 4) == pytest.approx(2.776445, abs=1e-6)


def test_paired_interval_of_one_pair_has_no_width_and_bad_input_is_refused():
    one = paired_interval([0.9], [0.8])
    assert one["low"] == one["high"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="a and b must pair up"):
        paired_interval([0.9, 0.8], [0.8])
    with pytest.raises(ValueError, match="confidence must be in \\(0, 1\\)"):
        paired_interval([0.9], [0.8], confidence=1.5)


def test_environment_names_the_versions():
    import torch

    env = environment()
    assert env["torch"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert {"torchvision", "numpy", "python", "machine", "cpu"} <= env.keys()
    assert not math.isnan(env["threads"])
