"""`python -m kdlab.bench`: k-means and Huffman timed against their references, damaged .kdz loads, the
.kdz files of random-init torchvision nets and a Transformer, the training benchmarks: int8 PTQ, the
distillation methods, channel pruning and low rank, and (`--deploy`) the
latency and memory of kdlab.deploy's forms against float and quantize_dynamic."""
from __future__ import annotations

import argparse
import heapq
import importlib.util
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .bench_deploy import bench_deploy, deploy_table
from .bench_distill import bench_distill
from .bench_files import bench_files
from .bench_quant import bench_ptq
from .bench_structured import bench_structured
from .container import load_compressed, save_compressed
from .data import DATASETS
from .errors import CompressedFormatError
from .files import atomic_write
from .fuzz import corruptions, sample_model
from .huffman import huffman_decode, huffman_encode
from .kmeans import init_centroids, kmeans_1d
from .timing import median_seconds

SECTIONS = ("kmeans", "huffman", "damaged", "files", "ptq", "distill", "structured", "deploy")


def heavy_tailed_weights(n, seed=0):
    """n seeded float32 stand-ins for a layer's weights: normal, with 1 % of them scaled by 6 (a heavy tail)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.05, n).astype(np.float32)
    weights[rng.choice(n, n // 100, replace=False)] *= 6
    return weights


def bench_kmeans(n=1_000_000, k=32, repeats=3, seed=0):
    """kmeans_1d at its defaults against scikit-learn's Lloyd KMeans at its own, from the same linear start."""
    from sklearn.cluster import KMeans

    weights = heavy_tailed_weights(n, seed)
    start = init_centroids(weights, k, "linear").numpy().reshape(-1, 1).astype(np.float64)
    column = weights.reshape(-1, 1).astype(np.float64)
    results = {}

    def ours():
        results["ours"] = kmeans_1d(weights, k, init="linear")

    def sklearn():
        results["sklearn"] = KMeans(k, init=start, n_init=1, algorithm="lloyd").fit(column)

    def optimal():
        results["optimal"] = kmeans_1d(weights, k, method="optimal")

    seconds = median_seconds({"ours": ours, "sklearn": sklearn}, repeats)
    inertia = _inertia(weights, *results["ours"])
    found = {
        "values": len(weights), "k": k, "ours_s": seconds["ours"], "sklearn_s": seconds["sklearn"],
        "speedup": seconds["sklearn"] / seconds["ours"], "sklearn_iterations": int(results["sklearn"].n_iter_),
        "clusters": len(results["ours"][0]), "inertia": inertia, "sklearn_inertia": float(results["sklearn"].inertia_),
        "inertia_ratio": inertia / float(results["sklearn"].inertia_),
    }
    if importlib.util.find_spec("ckwrap") is not None:  # method="optimal" is timed once: it is the slow one
        found["optimal_s"] = median_seconds({"optimal": optimal}, 1)["optimal"]
        found["optimal_inertia"] = _inertia(weights, *results["optimal"])
    return found


def _inertia(weights, centroids, labels):
    """Eq. 2's within-cluster sum of squares of a clustering, in float64."""
    return float(((weights.astype(np.float64) - centroids.double().numpy()[labels.numpy()]) ** 2).sum())


def plain_huffman_encode(symbols):
    """Reference codec in plain Python: heapq Huffman to a dict of code strings, "".join, int(bits, 2) to bytes."""
    heap = [(count, index, {symbol: ""}) for index, (symbol, count) in enumerate(Counter(symbols).items())]
    heapq.heapify(heap)
    while len(heap) > 1:
        count0, index, zeros = heapq.heappop(heap)
        count1, _, ones = heapq.heappop(heap)
        merged = {symbol: "0" + code for symbol, code in zeros.items()}
        merged.update({symbol: "1" + code for symbol, code in ones.items()})
        heapq.heappush(heap, (count0 + count1, index, merged))
    codes = {symbol: code or "0" for symbol, code in heap[0][2].items()} if heap else {}
    bits = "".join(codes[symbol] for symbol in symbols)
    padded = bits + "0" * (-len(bits) % 8)
    return int(padded or "0", 2).to_bytes(len(padded) // 8, "big"), len(bits), codes


def plain_huffman_decode(data, num_bits, codes):
    """Reference decoder in plain Python: walk the bits one at a time through a dict of code strings."""
    symbol_of = {code: symbol for symbol, code in codes.items()}
    out, prefix = [], ""
    for bit in format(int.from_bytes(data, "big"), f"0{8 * len(data)}b")[:num_bits]:
        prefix += bit
        if prefix in symbol_of:
            out.append(symbol_of[prefix])
            prefix = ""
    return out


def bell_indices(n, alphabet=32, seed=0):
    """n seeded codebook indices with a bell-shaped use: a rounded normal over 0..alphabet-1."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.normal((alphabet - 1) / 2, alphabet / 6, n)), 0, alphabet - 1).astype(np.int64)


def bench_huffman(n=2_000_000, alphabet=32, repeats=3, seed=0):
    """huffman_encode / huffman_decode against the plain-Python codec, and the stream size against the optimum."""
    symbols = bell_indices(n, alphabet, seed)
    as_list = symbols.tolist()
    stream, plain = huffman_encode(symbols), plain_huffman_encode(as_list)
    if not np.array_equal(huffman_decode(stream), symbols) or plain_huffman_decode(*plain) != as_list:
        raise AssertionError("a Huffman codec does not round-trip")
    seconds = median_seconds({
        "encode": lambda: huffman_encode(symbols),
        "decode": lambda: huffman_decode(stream),
        "plain_encode": lambda: plain_huffman_encode(as_list),
        "plain_decode": lambda: plain_huffman_decode(*plain),
    }, repeats)
    optimal_bytes = plain[1] / 8
    return {
        "symbols": n, "alphabet": alphabet, "bits_per_symbol": plain[1] / n,
        **{f"{name}_s": value for name, value in seconds.items()},
        "encode_msym_per_s": n / seconds["encode"] / 1e6, "decode_msym_per_s": n / seconds["decode"] / 1e6,
        "encode_speedup": seconds["plain_encode"] / seconds["encode"],
        "decode_speedup": seconds["plain_decode"] / seconds["decode"],
        "stream_bytes": len(stream), "optimal_payload_bytes": optimal_bytes,
        "overhead_bytes": len(stream) - optimal_bytes,
    }


def bench_damaged(count=150, seed=0):
    """Load time of `count` damaged copies of a .kdz file from each family of kdlab.fuzz, and of the intact file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.kdz"
        save_compressed(sample_model(seed), path)
        intact = median_seconds({"load": lambda: load_compressed(path)}, 5)["load"]
        data, seconds, refused = path.read_bytes(), [], 0
        for _, damaged in corruptions(data, count, seed):
            path.write_bytes(damaged)
            began = time.perf_counter()
            try:
                load_compressed(path)
            except CompressedFormatError:
                refused += 1
            seconds.append(time.perf_counter() - began)
    return {"files": len(seconds), "refused": refused, "file_bytes": len(data), "intact_s": intact,
            "median_s": statistics.median(seconds), "worst_s": max(seconds)}


def _fast_rows(results):
    """Table rows of the k-means, Huffman and damaged-load benchmarks present in `results`."""
    rows = []
    if "kmeans" in results:
        km = results["kmeans"]
        rows += [(f"kmeans_1d {km['values']:,} heavy-tailed weights, k={km['k']}, defaults", f"{km['ours_s']:.3f} s",
                  f"{km['sklearn_s']:.3f} s", f"{km['speedup']:.1f}x", ">= 10x faster"),
                 ("kmeans inertia", f"{km['inertia']:.4g}", f"{km['sklearn_inertia']:.4g}",
                  f"{km['inertia_ratio']:.6f}", "<= 1.001x")]
        if "optimal_s" in km:
            rows.append(("kmeans_1d method='optimal' (exact DP)", f"{km['optimal_s']:.3f} s, inertia "
                         f"{km['optimal_inertia']:.4g}", f"{km['ours_s']:.3f} s Lloyd",
                         f"{km['optimal_inertia'] / km['inertia']:.3f}x Lloyd's inertia", "global optimum"))
    if "huffman" in results:
        hf = results["huffman"]
        rows += [(f"huffman encode {hf['symbols']:,} symbols", f"{hf['encode_s'] * 1e3:.1f} ms "
                  f"({hf['encode_msym_per_s']:.0f} Msym/s)", f"{hf['plain_encode_s'] * 1e3:.0f} ms",
                  f"{hf['encode_speedup']:.1f}x", ">= 5x faster"),
                 ("huffman decode", f"{hf['decode_s'] * 1e3:.1f} ms ({hf['decode_msym_per_s']:.0f} Msym/s)",
                  f"{hf['plain_decode_s'] * 1e3:.0f} ms", f"{hf['decode_speedup']:.1f}x", ">= 10x faster"),
                 ("huffman stream size", f"{hf['stream_bytes']:,} B", f"{hf['optimal_payload_bytes']:,.0f} B optimal",
                  f"+{hf['overhead_bytes']:,.0f} B", "<= 4,096 B over")]
    if "damaged" in results:
        dm = results["damaged"]
        rows.append((f"damaged .kdz load, {dm['files']} files", f"worst {dm['worst_s'] * 1e3:.0f} ms, median "
                     f"{dm['median_s'] * 1e3:.1f} ms", f"{dm['intact_s'] * 1e3:.1f} ms intact",
                     f"{dm['refused']} refused", "<= 1 s each"))
    for row in results.get("files", {}).get("rows", []):
        target = {"resnet18": ">= 15x", "transformer": ">= 8x"}.get(row["model"], "measured")
        raw = ", raw floats: " + "; ".join(row["raw_weights"]) if row["raw_weights"] else ""
        rows.append((f".kdz random-init {row['model']}, s={row['sensitivity']}, {row['bits']} bits, "
                     f"entropy_weight {row['entropy_weight']}", f"{row['kdz_bytes']:,} B",
                     f"{row['float_bytes']:,} B float32",
                     f"{row['ratio']:.1f}x" + ("" if row["reload_exact"] else ", reload differs"), target + raw))
    return rows


def _training_rows(results):
    """Table rows of the PTQ, distillation and structured-pruning benchmarks present in `results`."""
    rows = []
    if "ptq" in results:
        pq = results["ptq"]
        for row in pq["rows"]:
            if row["per_channel"] and row["observer"] == "minmax":
                rows.append((f"{row['scheme']} PTQ {pq['model']} {row['bits']}-bit", f"{100 * row['accuracy']:.1f}%, "
                             f"{row['bytes']:,} B", f"{100 * pq['float_accuracy']:.1f}%, {pq['float_bytes']:,} B",
                             f"{0.0 - row['accuracy_drop_points']:+.1f} pt, {100 * row['size_ratio']:.1f}%",
                             "<= 0.3 pt, < 30%" if row["bits"] == 8 and row["scheme"] == "linear" else "measured"))
    if "distill" in results:
        ds = results["distill"]
        scratch = ds["methods"].get("scratch", {}).get("accuracy")
        for method, run in ds["methods"].items():
            rows.append((f"{method} {ds['student']} from {ds['teacher']}, {ds['epochs']} epochs",
                         f"{100 * run['accuracy']:.1f}% in {run['seconds']:.1f} s",
                         f"teacher {100 * ds['teacher_accuracy']:.1f}%",
                         f"{100 * (run['accuracy'] - scratch):+.1f} pt" if scratch is not None else "",
                         ">= 92%" if method in ("features", "relations") else "measured"))
    if "structured" in results:
        st = results["structured"]
        runs = [("prune_channels", "lenet5", f"{run['amount']:.0%}", run) for run in st["prune_channels"]]
        runs += [("low_rank", "lenet300", f"energy {run['energy']}", run) for run in st["low_rank"]]
        for method, network, setting, run in runs:
            original = st[network]
            rows.append((f"{method} {network} {setting}", f"{run['parameters']:,} params, "
                         f"{100 * run['retrained_accuracy']:.1f}%", f"{original['parameters']:,}, "
                         f"{100 * original['retrained_accuracy']:.1f}%", f"{run['speedup']:.1f}x faster", "measured"))
    return rows


def _deploy_rows(results):
    """Table rows of the deployment benchmark's targets: its best kdlab form against float, if it ran."""
    rows = []
    if "deploy" in results:
        dp = results["deploy"]
        for target in dp["targets"]:
            same = [row for row in dp["rows"] if (row["network"], row["batch"]) == (target["network"], target["batch"])]
            best = next((row for row in same if row["form"] == target["best_form"]), None)
            base = next(row for row in same if row["form"] == "float")
            accuracy = "" if best is None or "accuracy" not in best else f", {-best['accuracy_loss_points']:+.1f} pt"
            rows.append((f"deploy {target['network']} batch {target['batch']}, {target['best_form']}",
                         f"{best['ms']:.3f} ms{accuracy}" if best else "none", f"float {base['ms']:.3f} ms",
                         f"{best['speedup']:.2f}x faster" if best else "",
                         f">= {target['target_speedup']}x" + (", <= 0.5 pt" if "accuracy" in base else "")))
    return rows


def table(results):
    """The benchmark figures present in `results` as a plain-text table with each target."""
    rows = [("benchmark", "kdlab", "reference", "ratio", "target"), *_fast_rows(results), *_training_rows(results),
            *_deploy_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)
    return text + ("\n\n" + deploy_table(results["deploy"]) if "deploy" in results else "")


def main(argv=None):
    """Run the benchmarks, print the table and the JSON (also written to --json if given)."""
    parser = argparse.ArgumentParser(prog="python -m kdlab.bench", description=__doc__)
    parser.add_argument("--only", help=f"comma-separated benchmarks to run, of {','.join(SECTIONS)} (default: all; "
                                       "with --deploy alone, only deploy)")
    parser.add_argument("--deploy", action="store_true",
                        help="run the deployment benchmark (kdlab.deploy's forms against float and quantize_dynamic)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--values", type=int, default=1_000_000, help="weights for the k-means benchmark")
    parser.add_argument("--symbols", type=int, default=2_000_000, help="indices for the Huffman benchmark")
    parser.add_argument("--damaged", type=int, default=150, help="damaged .kdz files per corruption family")
    parser.add_argument("--dataset", default="mnist5k", choices=DATASETS,
                        help="data set of the training benchmarks (ptq, distill, structured, deploy)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    for option in ("repeats", "values", "symbols", "damaged"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be >= 1, got {getattr(args, option)}")
    only = args.only if args.only is not None else "deploy" if args.deploy else ",".join(SECTIONS)
    sections = [name for name in only.split(",") if name] + (["deploy"] if args.deploy else [])
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--only must list some of {','.join(SECTIONS)}, got {args.only!r}")
    torch.set_num_threads(args.threads)
    runs = {"kmeans": lambda: bench_kmeans(args.values, repeats=args.repeats),
            "huffman": lambda: bench_huffman(args.symbols, repeats=args.repeats),
            "damaged": lambda: bench_damaged(args.damaged),
            "files": bench_files,
            "ptq": lambda: bench_ptq(args.dataset),
            "distill": lambda: bench_distill(args.dataset),
            "structured": lambda: bench_structured(args.dataset, repeats=max(args.repeats, 20)),
            "deploy": lambda: bench_deploy(args.dataset, repeats=max(args.repeats, 15))}
    results = {name: runs[name]() for name in SECTIONS if name in sections}
    results["torch_threads"] = torch.get_num_threads()
    print(table(results))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        atomic_write(args.json, text + "\n")
    return results


if __name__ == "__main__":
    main()
