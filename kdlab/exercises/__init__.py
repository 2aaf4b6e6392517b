"""Checks of the course's exercises: each takes the learner's function and says what, if anything, is wrong.

One module per chapter, named after its idea; each lists its checks in `__all__`, and they are all here.
"""
from . import (codebook, deployment, distillation, huffman, pipeline, pruning, quantization, relations, sharing,
               temperature)
from .checking import ExerciseError

CHAPTERS = (distillation, temperature, pruning, sharing, codebook, huffman, pipeline, quantization, relations,
            deployment)
CHECKS = {name: getattr(module, name) for module in CHAPTERS for name in module.__all__}
globals().update(CHECKS)

__all__ = ["CHECKS", "ExerciseError", *CHECKS]
