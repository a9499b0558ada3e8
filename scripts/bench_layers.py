#!/usr/bin/env python3
"""Several layers in one extraction pass against one layer, side by side, in one run
(issue K's benchmark: three layers should cost at most 1.5x one layer's extraction).

Usage: scripts/bench_layers.py [--images 256] [--model resnet18]
                               [--layers layer2.1,layer3.1,layer4.1] [--method M]
                               [--background-ratio R] [--runs 3] [--hint target/release/hint]

(--model vit_b_16 --layers encoder.layers.encoder_layer_3,encoder.layers.encoder_layer_6,
encoder.layers.encoder_layer_9 for a ViT.)

Writes N generated JPEGs of 500x375 (as scripts/bench_host.py does: no downloads) and the
model's torchvision state_dict with random weights (the cost of a pass does not depend on
the values), then times `hint extract` on the same files, alternating, after one warm-up:

  (a) every layer alone, one run per layer (`--layer L`);
  (b) all of them in one pass (`--layer L1,L2,L3`): one forward and one backward per batch
      (backward stopped at the earliest layer), one region dataset per layer.

Each configuration runs --runs times; the best (shortest) run of each is compared. Prints
the seconds of each, (b) over each single layer, and (b) over the sum of (a) — what
extracting the layers one job at a time costs. Times are summary.json's `seconds` (first
batch to last file closed), the same clock for both.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_host import write_images  # noqa: E402


def write_weights(model: str, path: pathlib.Path) -> None:
    """Random weights as tests/python/hint_models.py builds them (a ViT's head and class
    token randomised: torchvision zero-initialises them, which would zero every gradient)."""
    import torch

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "python"))
    import hint_models

    torch.manual_seed(0)
    hint_models.save_state_dict(hint_models.build(model, 2), str(path))


def extract(hint: str, args, weights: pathlib.Path, images: pathlib.Path,
            out: pathlib.Path, layers: list) -> float:
    command = [
        hint, "extract", "--model", args.model, "--weights", str(weights),
        "--layer", ",".join(layers), "--images", str(images), "--out", str(out),
        "--method", args.method, "--background-ratio", str(args.background_ratio),
        "--batch-size", str(args.batch_size), "--device", "cpu", "--overwrite",
    ]
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"hint extract failed:\n{done.stderr}")
    summary = out / layers[0] / "summary.json" if len(layers) > 1 else out / "summary.json"
    return json.loads(summary.read_text())["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--layers", default="layer2.1,layer3.1,layer4.1")
    parser.add_argument("--method", default="gradient_x_activation")
    parser.add_argument("--background-ratio", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hint", default="target/release/hint")
    args = parser.parse_args()
    hint = str(pathlib.Path(args.hint).resolve())
    layers = args.layers.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        write_images(root / "images", args.images)
        weights = root / f"{args.model}.safetensors"
        write_weights(args.model, weights)
        print(f"{args.images} JPEGs of 500x375, {args.model}, {args.method}, background ratio "
              f"{args.background_ratio}, batch {args.batch_size}, {os.cpu_count()} cores")
        configurations = [[layer] for layer in layers] + [layers]
        extract(hint, args, weights, root / "images", root / "warm-up", layers)
        seconds = {tuple(c): [] for c in configurations}
        for _ in range(args.runs):
            for c in configurations:
                out = root / ("out-" + "+".join(c))
                seconds[tuple(c)].append(extract(hint, args, weights, root / "images", out, c))
        best = {c: min(s) for c, s in seconds.items()}
        for c, runs in seconds.items():
            name = ("one pass: " if len(c) > 1 else "alone:    ") + ",".join(c)
            print(f"  {name:<48} best {best[c]:7.2f} s; runs: "
                  + ", ".join(f"{s:.2f}" for s in runs))
        together = best[tuple(layers)]
        for layer in layers:
            print(f"  one pass / {layer} alone: {together / best[(layer,)]:.2f}x")
        singles = sum(best[(layer,)] for layer in layers)
        print(f"  one pass / the {len(layers)} runs one by one ({singles:.2f} s): "
              f"{together / singles:.2f}x (goal: one pass <= 1.5x one layer)")


if __name__ == "__main__":
    main()
