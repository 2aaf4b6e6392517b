"""compression_report: the per-layer table of Deep Compression's Tables 2–5, read off a real .kdz file."""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
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


REFERENCES = {"teacher": ("teacher", "tab:red", ":"),
              "student_scratch": ("student from scratch", "tab:gray", "--")}


def _label_boxes(points, texts, fontsize):
    """Offsets (in points) for the labels `texts` of the `points` (display positions in points), so that no label
    box overlaps another label or a point: candidate offsets tried in a fixed order, nearest first."""
    def box(x, y, text, dx, dy):
        width, height = 0.65 * fontsize * len(text) + 2, 1.25 * fontsize
        left, bottom = x + dx - (width if dx < 0 else 0), y + dy - (height if dy < 0 else 0)
        return left, bottom, left + width, bottom + height

    def clear(a, b):
        return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]

    marks = [(x - 4, y - 4, x + 4, y + 4) for x, y in points]
    candidates = [(sx * step, sy * step) for step in (5, 17, 29, 41, 53) for sy in (1, -1) for sx in (1, -1)]
    placed, offsets = [], []
    for (x, y), text in zip(points, texts):
        for dx, dy in candidates:
            if all(clear(box(x, y, text, dx, dy), other) for other in placed + marks):
                break
        placed.append(box(x, y, text, dx, dy))
        offsets.append((dx, dy))
    return offsets


def journey_figure(stages):
    """Accuracy against size (log scale) through the stages: the compression journey, as a matplotlib Figure.

    The stages other than "teacher" and "student_scratch" make the journey line (distilled, pruned, shared,
    finetuned, reloaded), each point numbered, the numbers named in a table beside the plot; stages of the same
    size and accuracy share one point and one label ("4=5"). The teacher and the student from scratch are
    horizontal reference lines. The accuracy axis spans at least 4 points, so that a few tenths look small.
    """
    if not _is_stages(stages, ("name", "accuracy", "bytes")):
        raise ValueError(f"stages must be a list of {{name, accuracy, bytes}} dicts (a report's 'stages'), "
                         f"got {stages!r:.100}")
    figure = Figure(figsize=(11, 4.8))
    figure.subplots_adjust(left=0.08, right=0.6, top=0.9, bottom=0.24)
    axes = figure.add_subplot()
    journey = [s for s in stages if s["name"] not in REFERENCES]
    references = [s for s in stages if s["name"] in REFERENCES]
    for stage in references:
        name, color, style = REFERENCES[stage["name"]]
        axes.axhline(100 * stage["accuracy"], color=color, linestyle=style, linewidth=1.5,
                     label=f"{name} (float32): {stage['accuracy']:.2%}, {stage['bytes']:,} bytes")
    sizes, accuracies = [s["bytes"] for s in journey], [100 * s["accuracy"] for s in journey]
    if journey:
        axes.plot(sizes, accuracies, marker="o", color="tab:blue", zorder=3,
                  label="the student through compression: " + " → ".join(s["name"] for s in journey))
    everything = [s["bytes"] for s in stages] or [1]
    axes.set_xscale("log")
    axes.set_xlim(min(everything) / 2, max(everything) * 2)
    axes.xaxis.set_major_formatter("{x:,.0f}")
    axes.xaxis.set_minor_formatter(NullFormatter())
    values = [100 * s["accuracy"] for s in stages] or [50.0]
    low, high = min(values) - 1, max(values) + 1
    if high - low < 4:
        low, high = (low + high) / 2 - 2, (low + high) / 2 + 2
    shift = max(high - 100.5, 0) - max(-0.5 - low, 0)
    axes.set_ylim(low - shift, high - shift)

    points = {}  # one label per distinct (bytes, accuracy): "4=5" for stages that coincide
    for number, (x, y) in enumerate(zip(sizes, accuracies), 1):
        points.setdefault((x, y), []).append(str(number))
    texts = ["=".join(numbers) for numbers in points.values()]
    scale = 72 / figure.dpi
    display = [tuple(scale * axes.transData.transform(point)) for point in points]
    for point, text, offset in zip(points, texts, _label_boxes(display, texts, 9)):
        far = max(map(abs, offset)) > 5
        axes.annotate(text, point, textcoords="offset points", xytext=offset, fontsize=9, fontweight="bold",
                      ha="right" if offset[0] < 0 else "left", va="top" if offset[1] < 0 else "bottom",
                      arrowprops={"arrowstyle": "-", "color": "gray", "linewidth": 0.6} if far else None)
    if journey:
        width = max(len(s["name"]) for s in journey)
        rows = [f"{'':3} {'stage':{width}} {'accuracy':>9} {'bytes':>10}"]
        rows += [f"{number:<3} {s['name']:{width}} {s['accuracy']:>9.2%} {s['bytes']:>10,}"
                 for number, s in enumerate(journey, 1)]
        axes.text(1.03, 1.0, "\n".join(rows), transform=axes.transAxes, va="top", ha="left", family="monospace",
                  fontsize=9)
    axes.set_xlabel("size (bytes, log scale): float32 parameters, then the compressed file")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("The compression journey: test accuracy against size, stage by stage")
    axes.grid(True, which="both", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(0, -0.13), fontsize=9, frameon=False)
    return figure
