"""Random damage to a .kdz file, as copies, disks and hand edits make it: for the fuzz test and the benchmark.

Four families, each a generator of (kind, damaged bytes) from a seeded NumPy generator:
- "raw": bit flips, truncations, appended bytes, huge length fields, spliced, deleted and repeated chunks;
- "resealed": the same, then the file's CRC-32 recomputed, so that only the reader's own checks can catch it;
- "header": one field of the JSON header replaced by an out-of-range, huge or wrongly typed value, resealed;
- "stream": damage inside one Huffman stream, with the stream's and the file's CRC-32 recomputed.
"""
from __future__ import annotations

import json
import zlib

import numpy as np

from .codebook import share_weights
from .container import MAGIC, PREAMBLE, VERSION
from .models import build_model
from .prune import prune_by_std
from .train import set_seed

WEIRD_VALUES = (-1, 0, 2**31, 2**63, 10**30, 1.5, "x", None, [], [2**40, 2**40], {"a": 1}, True)


def sample_model(seed=0):
    """The network the fuzzing damages: a pruned LeNet-5 with shared fc layers (codebook, sparse and plain entries)."""
    set_seed(seed)
    model = build_model("lenet5")
    prune_by_std(model, 1.0)
    return share_weights(model, {"5": 4, "7": 4})


def _seal(body):
    """`body` with its CRC-32 appended, as the .kdz and Huffman formats end."""
    return bytes(body) + zlib.crc32(body).to_bytes(4, "big")


def _parts(data):
    """(header dict, blob bytes) of an intact .kdz file."""
    size = int.from_bytes(data[len(MAGIC) + 1:PREAMBLE], "big")
    return json.loads(zlib.decompress(data[PREAMBLE:PREAMBLE + size])), data[PREAMBLE + size:-4]


def _assemble(header, blobs):
    """A .kdz file from a header dict and its blob bytes, with a valid CRC-32."""
    packed = zlib.compress(json.dumps(header).encode())
    return _seal(MAGIC + bytes([VERSION]) + len(packed).to_bytes(4, "big") + packed + blobs)


def damage(data, rng):
    """One random raw corruption of `data`: (kind, damaged bytes)."""
    data = bytearray(data)
    kind = rng.choice(["flip", "truncate", "append", "length", "splice", "delete", "repeat"])
    at = int(rng.integers(len(data)))
    span = int(rng.integers(1, max(2, len(data) // 8)))
    if kind == "flip":
        for bit in rng.integers(8 * len(data), size=int(rng.integers(1, 9))):
            data[bit >> 3] ^= 1 << (bit & 7)
    elif kind == "truncate":
        del data[at:]
    elif kind == "append":
        data += rng.bytes(span)
    elif kind == "length":  # a 4-byte length field at `at` (or the header's) set huge
        at = at if rng.random() < 0.5 else len(MAGIC) + 1
        data[at:at + 4] = int(rng.choice([2**31 - 1, 2**32 - 1, len(data) + 1, 0])).to_bytes(4, "big")
    elif kind == "splice":
        source = int(rng.integers(len(data)))
        data[at:at + span] = data[source:source + span]
    elif kind == "delete":
        del data[at:at + span]
    else:
        data[at:at] = data[at:at + span]
    return str(kind), bytes(data)


def corruptions(data, count, seed=0):
    """`count` corruptions of the intact .kdz bytes `data` from each family: yields (family/kind, bytes)."""
    rng = np.random.default_rng(seed)
    header, blobs = _parts(data)
    for _ in range(count):
        kind, damaged = damage(data, rng)
        yield f"raw/{kind}", damaged
    for _ in range(count):
        kind, damaged = damage(data, rng)
        yield f"resealed/{kind}", _seal(damaged[:-4])
    for _ in range(count):
        changed = json.loads(json.dumps(header))
        entry = changed["tensors"][int(rng.integers(len(changed["tensors"])))]
        target = changed["architecture"] if rng.random() < 0.2 else entry
        key = list(target)[int(rng.integers(len(target)))]
        value = WEIRD_VALUES[int(rng.integers(len(WEIRD_VALUES)))]
        if isinstance(target[key], list) and target[key] and rng.random() < 0.5:
            target[key][int(rng.integers(len(target[key])))] = value
        else:
            target[key] = value
        yield f"header/{key}", _assemble(changed, blobs)
    streams = [(i, j) for i, entry in enumerate(header["tensors"]) if entry["kind"] != "plain"
               for j in range(1, len(entry["blobs"]))]
    for _ in range(count):
        i, j = streams[int(rng.integers(len(streams)))]
        lengths = [length for entry in header["tensors"] for length in entry["blobs"]]
        flat = sum(len(entry["blobs"]) for entry in header["tensors"][:i]) + j
        begin = sum(lengths[:flat])
        stream = blobs[begin:begin + lengths[flat]]
        kind, damaged = damage(stream, rng)
        damaged = _seal(damaged[:-4]) if len(damaged) > 4 else damaged
        changed = json.loads(json.dumps(header))
        changed["tensors"][i]["blobs"][j] = len(damaged)
        yield f"stream/{kind}", _assemble(changed, blobs[:begin] + damaged + blobs[begin + lengths[flat]:])
