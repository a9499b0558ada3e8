#!/usr/bin/env python3
"""The host side of extraction against PIL, side by side, in one run (issue H's benchmark).

Usage: scripts/bench_host.py [--images 1500] [--processes N] [--hint target/release/hint]
                             [--hint-crop 64] [--hint-layers features.6,features.0]
                             [--size 500x375]

Writes N generated JPEGs of 500x375 (ImageNet's typical size; --size changes it, e.g.
2740x2055 to see hint's DCT-scaled decoding of photos at least 8 times the resize target;
smooth random content, quality 90, no downloads) as a two-class ImageFolder, then times on
the same files:

  (a) PIL: decode, bilinear resize of the shorter side to 256 (PIL's resize antialiases a
      downscale, as torchvision's Resize does on PIL images), centre crop 224, to float32,
      ImageNet normalisation — in --processes processes (default: every core);
  (b) `hint extract` with the seeded tiny CNN (resize 256, crop --hint-crop, default 64,
      background ratio 0, --decode-threads = --processes): decode, resize, crop, normalise,
      batch, the model, regions and Parquet — its images/s from summary.json, and its
      per-stage utilisation (which stage bounds it), at each of --hint-layers:
        features.6, the headline: the last convolution, so the model is its forward and a
          backward through the classifier head only — the nearest the tiny CNN comes to the
          negligible model issue H's goal assumes, still writing regions (about 150 rows of
          64 values per image);
        features.0, for contrast: the first convolution, so a backward through every layer
          and 16 x 64 x 64 positions per image (about 850 rows of 16 values). There the
          model itself costs about as much as decoding: the end-to-end rate is the model's
          (`make bench` gives its floor), not the host side's.

Each is run three times after one warm-up (page cache warm for both); the best run of each
is compared. Prints images/s of both, per process, and the ratio hint / PIL (end to end: a
model-bound hint run is bounded by its model thread, not by the host side), then the host side
alone: hint's decode-stage busy time per image (summary.json's stages) against PIL's time per
image and process. Issue H's goal on a CPU is hint >= 2x PIL per core.

hint resizes only the pixels its centre crop keeps (exactly, see worker/src/images/resample.rs),
so a crop of 64 does less resizing work than PIL's 224; `--hint-crop 224` compares like with
like on the host side (the tiny CNN then sees 12x the pixels, still small next to decoding).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def write_images(root: pathlib.Path, n: int, size: tuple = (500, 375)) -> list:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        # Smooth content (low-frequency noise upsampled) compresses like a photograph would,
        # unlike white noise.
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.BICUBIC)
        path = root / ("a" if i % 2 == 0 else "b") / f"img_{i:05}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def pil_one(path: str) -> float:
    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = 256 / min(w, h)
        image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
        w, h = image.size
        left, top = (w - 224) // 2, (h - 224) // 2
        image = image.crop((left, top, left + 224, top + 224))
        x = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
        return float(x[0, 0, 0])


def pil_rate(paths: list, processes: int) -> float:
    with Pool(processes) as pool:
        started = time.perf_counter()
        pool.map(pil_one, paths, chunksize=8)
        return len(paths) / (time.perf_counter() - started)


def hint_rate(hint: str, images: pathlib.Path, weights: pathlib.Path, out: pathlib.Path,
              processes: int, crop: int, layer: str) -> tuple:
    command = [
        hint, "extract", "--model", "tiny_cnn", "--weights", str(weights),
        "--layer", layer, "--images", str(images), "--out", str(out),
        "--resize", "256", "--crop", str(crop), "--background-ratio", "0",
        "--batch-size", "64", "--decode-threads", str(processes), "--device", "cpu",
        "--overwrite",
    ]
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"hint extract failed:\n{done.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    stages = next(l for l in done.stdout.splitlines() if l.strip().startswith("stages:"))
    decode = next(s for s in summary["stages"] if s["stage"] == "decode")
    decode_ms = 1000 * decode["busy_seconds"] / max(summary["images_processed"], 1)
    return summary["images_processed"] / summary["seconds"], stages.strip(), decode_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--hint", default="target/release/hint")
    parser.add_argument("--hint-crop", type=int, default=64)
    parser.add_argument("--size", default="500x375", help="the JPEGs' WIDTHxHEIGHT")
    parser.add_argument("--hint-layers", default="features.6,features.0",
                        help="tiny CNN layers, the first is the headline")
    args = parser.parse_args()
    hint = str(pathlib.Path(args.hint).resolve())
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        size = tuple(int(v) for v in args.size.split("x"))
        paths = write_images(root / "images", args.images, size)
        subprocess.run([hint, "example", "--out", str(root / "model"), "--per-class", "1"],
                       check=True, capture_output=True)
        weights = root / "model" / "tiny_cnn.safetensors"
        print(f"{args.images} JPEGs of {args.size}, {args.processes} process(es)/thread(s), "
              f"{os.cpu_count()} cores")
        layers = args.hint_layers.split(",")
        run = lambda layer: hint_rate(hint, root / "images", weights, root / "out",
                                      args.processes, args.hint_crop, layer)
        pil_rate(paths[: 4 * args.processes], args.processes)  # warm-up
        run(layers[0])
        # Alternated, so that a change in the machine's load touches every side alike.
        pil, ours = [], {layer: [] for layer in layers}
        for _ in range(3):
            pil.append(pil_rate(paths, args.processes))
            for layer in layers:
                ours[layer].append(run(layer))
        best_pil = max(pil)
        pil_ms = 1000 * args.processes / best_pil
        print(f"  PIL  (resize 256, crop 224): {best_pil:7.1f} images/s "
              f"({best_pil / args.processes:.1f} per process); runs: "
              + ", ".join(f"{r:.1f}" for r in pil))
        for k, layer in enumerate(layers):
            best_hint, stages, _ = max(ours[layer])
            print(f"  hint (resize 256, crop {args.hint_crop}, tiny CNN at {layer}): "
                  f"{best_hint:7.1f} images/s ({best_hint / args.processes:.1f} per thread); "
                  "runs: " + ", ".join(f"{r:.1f}" for r, _, _ in ours[layer]))
            print(f"    {stages}")
            goal = " (goal on a CPU: >= 2x per core)" if k == 0 else ""
            print(f"    hint / PIL: {best_hint / best_pil:.2f}x{goal}")
        # The host side alone: hint's decode stage (read, decode, resize, crop, normalise into
        # the batch) per image and thread, against PIL's whole per-image time per process.
        decode_ms = min(ms for runs in ours.values() for _, _, ms in runs)
        print(f"  host side per image and core: hint decode stage {decode_ms:.2f} ms, PIL "
              f"{pil_ms:.2f} ms: {pil_ms / decode_ms:.2f}x")

if __name__ == "__main__":
    main()
