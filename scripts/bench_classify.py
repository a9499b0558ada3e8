#!/usr/bin/env python3
"""`hint classify` against scikit-learn's LogisticRegression, side by side, in one run
(issue I's classifier benchmark).

Usage: scripts/bench_classify.py [--hint target/release/hint] [--before DIR/hint]
                                 [--rows 20000] [--d 512] [--runs 3] [--keep DIR]

Needs scikit-learn, which the project's tests do not: `.venv/bin/pip install scikit-learn`
(the script stops with that message when it is missing).

Writes one region file of --rows rows x --d channels (f32; 1,000 images of 20 positions,
half foreground; labels cat and dog) in the README's region schema with pyarrow, and the
hierarchy animal: [cat, dog] — three concepts. The activations are ReLU'd correlated
Gaussians (a shared low-rank part, as a CNN layer's channels are), with a shift on 24
channels per leaf and 24 shared by both in foreground regions, so the classes overlap.

Then, in one run:

  (a) `hint classify --device cpu` end to end (process start, libtorch load, reading the
      Parquet file, sampling, Newton, writing), after one warm-up run, --runs times: min and
      median wall time; then one `--profile` run's per-phase breakdown (its wall time less
      its in-process total is the process start-up). With --before (an older build's hint,
      with its hint-worker beside it), that build too, timed in the same loop, and how far
      apart the two builds' classifiers are, and whether their metrics are identical. Both
      are also measured against the optimum found by plain f64 Newton steps in numpy.
  (b) scikit-learn on exactly the rows hint trains on (the sampler's documented rules are
      replayed: every pool is taken whole or by bottom-k of seed::derive keys, the split by
      image uses the same keys; the script checks the counts against metrics.json). The
      objective is the same: hint minimises Σ ωᵢ BCEᵢ + (λ/2)‖v‖² with class-balanced ωᵢ
      (each class sums to 1/2, Σ ω = 1) on features standardised with the ω-weighted mean and
      standard deviation, bias unpenalised; scikit-learn minimises
      (1/Σs) Σ sᵢ BCEᵢ + 1/(2·C·Σs) ‖w‖² with an unpenalised intercept, so sample_weight = ω
      and C = 1/λ give the same optimum. Timed: `fit` alone on the standardised rows (no
      process start, no reading), per solver: lbfgs with its defaults (tol 1e-4,
      max_iter 100 — what a user would run) and newton-cholesky (tol 1e-8, Newton like hint).
      The largest difference between scikit-learn's and hint's weights says both solve the
      same problem.

Prints the times and the ratios hint / scikit-learn (above 1: hint is slower).
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import region_file

try:
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
except ImportError:
    sys.exit("scikit-learn is missing: .venv/bin/pip install scikit-learn "
             "(the benchmark needs it; the tests do not)")

from safetensors.numpy import load_file

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
SAMPLE_TAG = int.from_bytes(b"hintsamp", "big")
SPLIT_TAG = int.from_bytes(b"hintsplt", "big")
IMAGES = 1000
POSITIONS = 20  # a 4 x 5 map; the first 10 positions of an image are foreground
LABELS = ["cat", "dog"]


def mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def derive(seed: int, parts: list) -> np.ndarray:
    """common::seed::derive, vectorised over arrays of parts (wrapping u64 arithmetic)."""
    with np.errstate(over="ignore"):
        g = np.uint64(GAMMA)
        state = mix(np.uint64(seed) + g)
        for part in parts:
            state = mix((state + g) ^ np.asarray(part, dtype=np.uint64))
        return mix((state + g) ^ np.uint64(len(parts)))


def write_dataset(root: pathlib.Path, rows: int, d: int) -> dict:
    """The region file and the hierarchy; returns the rows as numpy arrays."""
    rng = np.random.default_rng(0)
    images = rows // POSITIONS
    image_id = np.repeat(np.arange(images, dtype=np.uint64), POSITIONS)
    position = np.tile(np.arange(POSITIONS), images)
    label = (image_id % 2).astype(np.uint32)
    foreground = position < POSITIONS // 2
    y, x = (position // 5).astype(np.uint16), (position % 5).astype(np.uint16)
    mixing = rng.normal(size=(16, d)) * 0.35
    z = rng.normal(size=(rows, d)) + rng.normal(size=(rows, 16)) @ mixing
    channels = rng.permutation(d)[:72].reshape(3, 24)
    for leaf in range(2):
        z[np.ix_(foreground & (label == leaf), channels[leaf])] += 0.6
    z[np.ix_(foreground, channels[2])] += 0.5
    act = np.maximum(z + 0.3, 0).astype(np.float32)
    metadata = {"model": "bench", "layer": "features.0", "method": "gradient",
                "aggregation": "norm", "threshold": "0.5", "D": str(d), "H": "4", "W": "5",
                "activation_type": "f32", "labels": json.dumps(LABELS)}
    (root / "regions").mkdir(parents=True)
    saliency = np.where(foreground, 0.9, 0.1).astype(np.float32)
    table = region_file.region_table(image_id, label, y, x, saliency, foreground,
                                     act.reshape(-1), pa.float32(), d, metadata)
    pq.write_table(table, root / "regions" / "regions-00000.parquet")
    (root / "hierarchy.yaml").write_text("name: bench\nchildren:\n  animal: [cat, dog]\n")
    return {"image_id": image_id, "label": label, "y": y, "x": x, "fg": foreground, "act": act}


def training_rows(data: dict, inside: list, seed: int, holdout: float) -> tuple:
    """The training rows and targets hint draws for a concept over labels `inside` with the
    default settings (mixed negatives, max_per_class above every pool): the sampler's rules
    of common/src/regions/sample, replayed."""
    image_id, label, fg = data["image_id"], data["label"], data["fg"]
    key = derive(seed, [SAMPLE_TAG, image_id, data["y"].astype(np.uint64),
                        data["x"].astype(np.uint64)])
    order = np.lexsort((data["x"], data["y"], image_id, key))  # SampleKey's order
    is_in = np.isin(label, inside)
    pos = order[(fg & is_in)[order]]
    other = order[(fg & ~is_in)[order]]
    background = order[(~fg)[order]]
    n_pos = len(pos)
    n_other = min(len(other), (n_pos + 1) // 2)
    n_bg = min(len(background), n_pos - n_other)
    n_other = min(len(other), n_pos - n_bg)
    held = set()
    for lab in range(len(LABELS)):
        ids = np.unique(image_id[label == lab])
        ranked = sorted(zip(derive(seed, [SPLIT_TAG, ids]).tolist(), ids.tolist()))
        n_eval = min(max(round(holdout * len(ids)), 1), len(ids) - 1)
        held.update((lab, i) for _, i in ranked[:n_eval])
    rows = np.concatenate([pos, other[:n_other], background[:n_bg]])
    targets = np.concatenate([np.ones(n_pos), np.zeros(n_other + n_bg)])
    train = np.array([(int(label[r]), int(image_id[r])) not in held for r in rows])
    return rows[train], targets[train]


def run_hint(hint: str, root: pathlib.Path, out: pathlib.Path, profile: bool) -> tuple:
    """Wall seconds and stdout of one `hint classify`; stdout None when a --profile run
    fails (a build without the flag)."""
    command = [hint, "classify", "--regions", str(root / "regions"), "--hierarchy",
               str(root / "hierarchy.yaml"), "--out", str(out), "--device", "cpu",
               "--overwrite"] + (["--profile"] if profile else [])
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        if profile:
            return seconds, None
        sys.exit(f"{hint} classify failed:\n{done.stderr}")
    return seconds, done.stdout


def classifiers(out: pathlib.Path) -> dict:
    return {p.name: load_file(str(p)) for p in sorted(out.glob("concept-*.safetensors"))}


def max_difference(a: dict, b: dict) -> float:
    """Largest |Δ| over weights and biases, relative to 1 + |value|."""
    worst = 0.0
    for name in a:
        for t in ("weight", "bias"):
            x, y = a[name][t].astype(np.float64), b[name][t].astype(np.float64)
            worst = max(worst, float(np.max(np.abs(x - y) / (1 + np.abs(y)))))
    return worst


def time_hint(label: str, hint: str, root: pathlib.Path, runs: int) -> tuple:
    out = root / f"out-{label}"
    run_hint(hint, root, out, False)  # warm-up: page cache, libtorch's files
    times = [run_hint(hint, root, out, False)[0] for _ in range(runs)]
    return times, out


def sklearn_fits(data: dict, problems: list, l2: float, solver: str, tol: float) -> tuple:
    total, weights = 0.0, {}
    for name, rows, targets in problems:
        z, om, mu, sigma = standardised(data, rows, targets)
        model = LogisticRegression(C=1.0 / l2, solver=solver, tol=tol, max_iter=100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            started = time.perf_counter()
            model.fit(z, targets, sample_weight=om)
            total += time.perf_counter() - started
        w = model.coef_[0] / sigma
        weights[name] = {"weight": w, "bias": np.array([model.intercept_[0] - w @ mu])}
    return total, weights


def standardised(data: dict, rows: np.ndarray, targets: np.ndarray) -> tuple:
    """The rows standardised as hint does: ω-weighted mean and standard deviation."""
    x = data["act"][rows].astype(np.float64)
    pos, neg = targets.sum(), len(targets) - targets.sum()
    om = np.where(targets > 0.5, 0.5 / pos, 0.5 / neg)
    mu = om @ x
    sigma = np.sqrt(om @ (x - mu) ** 2)
    sigma[sigma <= 1e-12] = 1.0
    return (x - mu) / sigma, om, mu, sigma


def exact_optimum(data: dict, rows: np.ndarray, targets: np.ndarray, l2: float) -> dict:
    """The objective's minimiser by plain f64 Newton steps (exact Hessians, no reuse), run
    until the decrement is at f64's resolution: the reference both builds are measured by."""
    z, om, mu, sigma = standardised(data, rows, targets)
    za = np.hstack([z, np.ones((len(z), 1))])
    pen = np.full(za.shape[1], l2)
    pen[-1] = 0.0
    theta = np.zeros(za.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(za @ theta)))
        grad = za.T @ (om * (p - targets)) + pen * theta
        hess = (za * (om * p * (1 - p))[:, None]).T @ za + np.diag(pen)
        step = np.linalg.solve(hess, -grad)
        theta += step
        if -grad @ step < 1e-28:
            break
    w = theta[:-1] / sigma
    return {"weight": w, "bias": np.array([theta[-1] - w @ mu])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hint", default="target/release/hint")
    parser.add_argument("--before", help="an older build's hint, timed in the same run")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", help="write the data set here instead of a temporary dir")
    args = parser.parse_args()
    hint = str(pathlib.Path(args.hint).resolve())
    scratch = tempfile.mkdtemp(prefix="bench-classify-")
    root = pathlib.Path(args.keep or scratch)
    if args.keep and (root / "regions").exists():
        shutil.rmtree(root / "regions")
    try:
        data = write_dataset(root, args.rows, args.d)
        print(f"{args.rows} regions x {args.d} channels (f32), 3 concepts, "
              f"{os.cpu_count()} cores, scikit-learn {sklearn.__version__}")
        builds = [("after", hint)] + ([("before", args.before)] if args.before else [])
        results = {}
        for label, path in builds:
            results[label] = time_hint(label, str(pathlib.Path(path).resolve()), root,
                                       args.runs)
        for label, (times, _) in results.items():
            print(f"  hint {label:6} end to end: min {min(times):.2f} s, median "
                  f"{statistics.median(times):.2f} s; runs: "
                  + ", ".join(f"{t:.2f}" for t in times))
        ours = classifiers(results["after"][1])
        if args.before:
            before = classifiers(results["before"][1])
            identical = all(
                (ours[n][t].tobytes() == before[n][t].tobytes()) for n in ours
                for t in ("weight", "bias"))
            print(f"  classifiers after vs before: "
                  + ("byte-identical" if identical else
                     f"max |Δ|/(1+|w|) = {max_difference(ours, before):.2e}"))
            fields = ("accuracy", "precision", "recall", "f1", "train_accuracy")
            same = [
                all(a[k] == b[k] for k in fields)
                for a, b in zip(*(json.loads((results[l][1] / "metrics.json").read_text())
                                  ["concepts"] for l in ("after", "before")))]
            print("  held-out and training metrics after vs before: "
                  + ("identical" if all(same) else f"differ ({same})"))
        # The profile of one more run (not timed above: --profile adds a read-only pass).
        wall, stdout = run_hint(hint, root, root / "out-after", True)
        if stdout is None:
            print("  (this build of hint has no --profile)")
        else:
            lines = stdout.splitlines()
            at = next(i for i, l in enumerate(lines) if l.startswith("profile"))
            for line in lines[at:]:
                print("  " + line)
                if "in-process total" in line:
                    inside = float(line.split("in-process total")[1].split()[0])
                    print(f"    process start-up (wall {wall:.3f} less in-process total): "
                          f"{wall - inside:.3f}")
        metrics = json.loads((results["after"][1] / "metrics.json").read_text())
        problems = []
        for m in metrics["concepts"]:
            inside = [LABELS.index("cat"), LABELS.index("dog")] if m["key"] == "animal" \
                else [LABELS.index(m["key"])]
            rows, targets = training_rows(data, inside, 0, 0.2)
            assert (len(rows), int(targets.sum())) == (m["n_train"], m["n_train_pos"]), \
                f"{m['key']}: replayed {len(rows)} rows, hint trained on {m['n_train']}"
            problems.append((f"concept-{m['id']:05}.safetensors", rows, targets))
        print("  training rows per concept: "
              + ", ".join(f"{m['key']} {m['n_train']} ({m['iterations']} Newton steps)"
                          for m in metrics["concepts"]))
        reference = {name: exact_optimum(data, rows, targets, 1e-3)
                     for name, rows, targets in problems}
        print("  distance to the optimum (numpy f64 Newton to |∇| ~ 1e-16), max |Δ|/(1+|w|): "
              + ", ".join(f"{label} {max_difference(classifiers(out), reference):.2e}"
                          for label, (_, out) in results.items()))
        best = min(results["after"][0])
        for solver, tol in (("lbfgs", 1e-4), ("newton-cholesky", 1e-8)):
            seconds, theirs = sklearn_fits(data, problems, 1e-3, solver, tol)
            print(f"  scikit-learn {solver} (tol {tol:g}), fit only: {seconds:.2f} s; "
                  f"hint after / it: {best / seconds:.2f}x"
                  + (f", hint before / it: {min(results['before'][0]) / seconds:.2f}x"
                     if args.before else "")
                  + f"; weights vs hint: max |Δ|/(1+|w|) = {max_difference(theirs, ours):.1e}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
