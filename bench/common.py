"""What the benchmark scripts share: the fixed bench key, the p-value bins, and loading the model.

The scripts run as ``python bench/NAME.py``, so this module is importable as ``common`` from their folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from framemark.watermark import WatermarkKey

# A fixed key, so that every bench run marks and checks the same way and results are reproducible.
BENCH_KEY = WatermarkKey(bytes(range(32)))

# Bins for p-value histograms: the detection threshold 1e-6 first, then the usual significance levels.
P_VALUE_BINS = [0.0, 1e-6, 1e-3, 0.01, 0.05, 0.1, 0.5, 1.0]


def p_value_histogram(p_values) -> dict[str, int]:
    """Counts per bin of P_VALUE_BINS, labelled "(lo, hi]"."""
    counts, _ = np.histogram(np.clip(p_values, 0, 1), bins=P_VALUE_BINS)
    return {f"({lo:g}, {hi:g}]": int(c) for lo, hi, c in zip(P_VALUE_BINS[:-1], P_VALUE_BINS[1:], counts)}


def add_model_arguments(ap: argparse.ArgumentParser) -> None:
    """--model, --threads and --json, the options of every bench that runs the default model."""
    ap.add_argument("--model", default=None, help="diffusers folder (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def load_model(args: argparse.Namespace):
    """The model named by ``--model`` (a ``VideoModel``), with torch limited to ``--threads`` threads."""
    import torch

    from framemark.generator.models import load_model as load

    torch.set_num_threads(args.threads)
    return load(args.model)


def read_records(store: Path) -> dict[tuple, dict]:
    """A bench's per-record store (JSON lines with ``clip``, ``marked``, ``attack``) as {(clip, marked, attack):
    record}, so that a run resumes where the last one stopped; a line cut off by a killed run is read again."""
    done: dict[tuple, dict] = {}
    if store.exists():
        for line in store.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # blank, or the last line of a run killed mid-write: scored again
            done[(r["clip"], r["marked"], r["attack"])] = r
    return done
