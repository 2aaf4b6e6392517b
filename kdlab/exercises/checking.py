"""What every exercise check shares: the error a wrong answer raises, calling a learner's code, comparing results."""
from __future__ import annotations

import numpy as np
import torch


class ExerciseError(AssertionError):
    """A learner's answer to an exercise is wrong or unfinished; the message says what to change."""


def attempt(exercise, answer, *args, **kwargs):
    """answer(*args, **kwargs); an unfinished stub (NotImplementedError) or a crash becomes an ExerciseError."""
    if not callable(answer):
        raise ExerciseError(f"exercise {exercise}: pass your function itself, got {type(answer).__name__}")
    try:
        return answer(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseError(f"exercise {exercise} is not done yet: replace `raise NotImplementedError` in its cell "
                            f"with your code, run that cell, then this one") from None
    except Exception as error:  # the learner's code failed: say where, keep the traceback
        raise ExerciseError(f"exercise {exercise}: your function raised {type(error).__name__}: {error}") from error


def _numbers(value):
    """value as a float64 numpy array (tensors detached), or None if it is not numeric."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array


def close(got, expected, rtol=1e-5, atol=1e-6):
    """True if got has expected's shape and equals it within rtol and atol."""
    a, b = _numbers(got), _numbers(expected)
    return a is not None and a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def compare(exercise, got, expected, mistakes=(), what="the result", rtol=1e-5, atol=1e-6):
    """Pass if got ≈ expected; otherwise raise the message of the first known mistake got matches, or a diff.

    `mistakes` is a sequence of (what that mistake would return, the message that explains it).
    """
    if close(got, expected, rtol, atol):
        return
    a, b = _numbers(got), _numbers(expected)
    if a is None:
        raise ExerciseError(f"exercise {exercise}: {what} must be numbers (a tensor or an array), "
                            f"got {type(got).__name__}")
    if a.shape != b.shape:
        raise ExerciseError(f"exercise {exercise}: {what} must have shape {tuple(b.shape)}, got {tuple(a.shape)}")
    for wrong, message in mistakes:
        if close(got, wrong, rtol, atol):
            raise ExerciseError(f"exercise {exercise}: {message}")
    worst = float(np.abs(a - b).max())
    raise ExerciseError(f"exercise {exercise}: {what} differs from the right answer by up to {worst:.3g} "
                        f"(expected {np.array2string(b.ravel()[:6], precision=4)}..., got "
                        f"{np.array2string(a.ravel()[:6], precision=4)}...)")


def passed(exercise, what):
    """Tell the learner the answer is right."""
    print(f"exercise {exercise}: correct. {what}")
