"""compression_report: the per-layer table of Deep Compression's Tables 2–5, read off a real .kdz file."""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from .container import DTYPES, read_compressed, save_compressed
from .huffman import huffman_decode

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
COLUMNS = [("layer", "layer", "{}"), ("weights", "#weights", "{:,}"), ("kept", "kept", "{:.1%}"),
           ("index_bits", "weight bits (P+Q)", "{}"), ("index_bits_huffman", "weight bits (P+Q+H)", "{:.2f}"),
           ("position_bits", "index bits (P+Q)", "{}"), ("position_bits_huffman", "index bits (P+Q+H)", "{:.2f}"),
           ("bytes", "bytes", "{:,}"), ("ratio", "compress rate", "{:.1f}x")]


@dataclass
class CompressionReport:
    """Per-layer rows, the file's size, the float32 size of the parameters and their ratio."""

    rows: list = field(default_factory=list)
    file_bytes: int = 0
    float32_bytes: int = 0

    @property
    def ratio(self):
        """float32 bytes of all parameters / bytes of the file on disk."""
        return self.float32_bytes / self.file_bytes

    @property
    def total(self):
        """The totals row: all weights, the kept fraction, the whole file's bytes and the overall ratio."""
        weights = sum(r["weights"] for r in self.rows)
        kept = sum(r["kept"] * r["weights"] for r in self.rows) / max(weights, 1)
        return {"layer": "total", "weights": weights, "kept": kept, "index_bits": "", "index_bits_huffman": None,
                "position_bits": "", "position_bits_huffman": None, "bytes": self.file_bytes, "ratio": self.ratio}

    def mean_bits(self, key):
        """The mean of column `key` ("index_bits_huffman" or "position_bits_huffman") over the non-zero weights."""
        rows = [r for r in self.rows if r[key] is not None]
        kept = sum(r["kept"] * r["weights"] for r in rows)
        return sum(r[key] * r["kept"] * r["weights"] for r in rows) / kept if kept else None

    def to_dict(self):
        """The report as plain data (for JSON)."""
        return {"layers": self.rows, "total": self.total, "file_bytes": self.file_bytes,
                "float32_bytes": self.float32_bytes, "ratio": self.ratio}

    def __str__(self):
        def cell(row, key, fmt):
            return "" if row[key] is None or row[key] == "" else fmt.format(row[key])

        table = [[title for _, title, _ in COLUMNS]]
        table += [[cell(row, key, fmt) for key, _, fmt in COLUMNS] for row in self.rows + [self.total]]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        lines = ["  ".join(text.rjust(w) if i else text.ljust(w) for i, (text, w) in enumerate(zip(line, widths)))
                 for line in table]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines + [f"file {self.file_bytes:,} bytes; float32 parameters {self.float32_bytes:,} "
                                  f"bytes; ratio {self.ratio:.1f}x"])


def _layer_row(layer, entries):
    """One table row from the entries (weight, bias, ...) of one layer."""
    weight = next((e for e in entries if e["name"].endswith("weight")), entries[0])
    row = {"layer": layer, "weights": math.prod(weight["shape"]), "kept": 1.0, "index_bits": 32,
           "index_bits_huffman": None, "position_bits": None, "position_bits_huffman": None,
           "bytes": sum(sum(e["blobs"]) for e in entries)}
    if weight["kind"] == "plain":
        row["index_bits"] = 8 * DTYPES[weight["dtype"]].itemsize
    elif weight["kind"] == "sparse":
        values, positions = weight["data"]
        stored = np.frombuffer(values, "<f4")
        row.update(kept=int(np.count_nonzero(stored)) / max(row["weights"], 1),
                   position_bits=weight["position_bits"],
                   position_bits_huffman=8 * len(positions) / max(len(stored), 1))
    else:
        values, positions, indices = weight["data"]
        codebook = np.frombuffer(values, "<f4")
        which = huffman_decode(indices)
        nonzero = int(np.count_nonzero(codebook[which]))
        entries_stored = max(len(which), 1)
        row.update(kept=nonzero / max(row["weights"], 1),
                   index_bits=max(1, math.ceil(math.log2(max(np.count_nonzero(codebook), 1)))),
                   index_bits_huffman=8 * len(indices) / entries_stored,
                   position_bits=weight["position_bits"],
                   position_bits_huffman=8 * len(positions) / entries_stored)
    float32 = sum(4 * math.prod(e["shape"]) for e in entries if not e["name"].endswith(BUFFERS))
    row["ratio"] = float32 / max(row["bytes"], 1)
    return row, float32


def compression_report(model_or_path):
    """The Deep Compression table of a model (saved to a temporary .kdz file first) or of a .kdz file.

    Per layer: weights, % kept, bits per weight index before and after Huffman coding, bits per relative
    position before and after Huffman coding, bytes, and the layer's float32 bytes / stored bytes; the total
    ratio is float32 bytes of all parameters / bytes of the whole file on disk (header and checksum included).
    """
    if isinstance(model_or_path, nn.Module):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.kdz"
            save_compressed(model_or_path, path)
            return compression_report(path)
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise ValueError(f"model_or_path must be an nn.Module or the path of a .kdz file, "
                         f"got {type(model_or_path).__name__}")
    _, entries, file_bytes = read_compressed(model_or_path)
    layers = {}
    for entry in entries:
        layers.setdefault(entry["name"].rpartition(".")[0], []).append(entry)
    report = CompressionReport(file_bytes=file_bytes)
    for layer, group in layers.items():
        row, float32 = _layer_row(layer, group)
        report.rows.append(row)
        report.float32_bytes += float32
    return report


def _is_stages(stages, keys):
    """True if `stages` is a list (or tuple) of dicts that each hold `keys`."""
    return isinstance(stages, (list, tuple)) and all(isinstance(s, dict) and set(keys) <= s.keys() for s in stages)


def stage_table(report):
    """The stages of a pipeline report as a Markdown table: accuracy, bytes, size ratio and seconds."""
    if not (isinstance(report, dict) and isinstance(report.get("student_distilled"), dict)
            and "float32_bytes" in report["student_distilled"]
            and _is_stages(report.get("stages"), ("name", "accuracy", "bytes", "seconds"))):
        raise ValueError(f"report must be a pipeline report (as run_distillation and run_pipeline return), "
                         f"got {report!r:.100}")
    base = report["student_distilled"]["float32_bytes"]
    lines = ["| stage | test accuracy | bytes | smaller than the float32 student | seconds |", "|---|---|---|---|---|"]
    for stage in report["stages"]:
        lines.append(f"| {stage['name']} | {stage['accuracy']:.2%} | {stage['bytes']:,} | "
                     f"{base / stage['bytes']:.1f}x | {stage['seconds']:.1f} |")
    return "\n".join(lines)


def journey_figure(stages):
    """Accuracy against size (log scale) through the stages: the compression journey, as a matplotlib Figure."""
    if not _is_stages(stages, ("name", "accuracy", "bytes")):
        raise ValueError(f"stages must be a list of {{name, accuracy, bytes}} dicts (a report's 'stages'), "
                         f"got {stages!r:.100}")
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot()
    sizes, accuracies = [s["bytes"] for s in stages], [100 * s["accuracy"] for s in stages]
    axes.plot(sizes, accuracies, marker="o")
    for stage, x, y in zip(stages, sizes, accuracies):
        axes.annotate(stage["name"], (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("size (bytes, log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("The compression journey: accuracy against size, stage by stage")
    axes.grid(True, which="both", alpha=0.3)
    return figure
