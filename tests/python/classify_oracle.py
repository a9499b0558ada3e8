"""Oracle for `hint classify`, with PyTorch, safetensors and pyarrow alone. Prints JSON.

    classify_oracle.py predict CLASSIFIER_DIR REGION_FILE
        Loads every concept-*.safetensors with safetensors.torch (and its metadata with
        safe_open), reads the region file with pyarrow, and prints per classifier file:
        {"metadata", "weight_shape", "bias_shape", "logits": [first 50 rows]}.

    classify_oracle.py fit PROBLEM_JSON
        PROBLEM_JSON = {"x": [[...]...], "y": [...], "l2": λ}. Minimises the objective
        documented in worker/src/classify/logistic.rs with torch.optim.LBFGS in float64 —
        class-balanced weights (each class sums to 1/2), features standardised with the
        weighted mean and standard deviation (σ ≤ 1e-12 → 1), λ/2 ‖v‖² on the standardised
        weights, bias unpenalised — and prints the classifier on raw features:
        {"weight": [...], "bias": b, "grad_norm": |∇| at the end}.

The Rust side (tests/tests/hint/classify.rs) compares these with what hint wrote.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import load_file


def predict(classifier_dir: str, region_file: str) -> None:
    table = pq.read_table(region_file)
    acts = (
        table.column("activation").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    )
    d = table.schema.field("activation").type.list_size
    x = torch.from_numpy(acts.astype(np.float64).reshape(-1, d))[:50]
    out = {}
    for path in sorted(Path(classifier_dir).glob("concept-*.safetensors")):
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        w, b = tensors["weight"], tensors["bias"]
        assert w.dtype == torch.float32 and b.dtype == torch.float32
        logits = x @ w.double() + b.double()
        out[path.name] = {
            "metadata": metadata,
            "weight_shape": list(w.shape),
            "bias_shape": list(b.shape),
            "logits": logits.tolist(),
        }
    print(json.dumps(out))


def fit(problem_json: str) -> None:
    problem = json.loads(Path(problem_json).read_text())
    x = torch.tensor(problem["x"], dtype=torch.float64)
    y = torch.tensor(problem["y"], dtype=torch.float64)
    lam = float(problem["l2"])
    pos = (y > 0.5).sum()
    neg = (y <= 0.5).sum()
    om = torch.where(y > 0.5, 0.5 / pos, 0.5 / neg)
    mu = (om[:, None] * x).sum(0)
    sigma = (om[:, None] * (x - mu) ** 2).sum(0).sqrt()
    sigma = torch.where(sigma <= 1e-12, torch.ones_like(sigma), sigma)
    z = (x - mu) / sigma
    v = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)

    def objective():
        s = z @ v + c
        bce = torch.nn.functional.binary_cross_entropy_with_logits(s, y, reduction="none")
        return (om * bce).sum() + 0.5 * lam * (v * v).sum()

    opt = torch.optim.LBFGS(
        [v, c],
        lr=1.0,
        max_iter=5000,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    loss = objective()
    gv, gc = torch.autograd.grad(loss, [v, c])
    grad_norm = float(torch.cat([gv, gc.reshape(1)]).norm())
    with torch.no_grad():
        weight = v / sigma
        bias = c - (weight * mu).sum()
    print(json.dumps({"weight": weight.tolist(), "bias": float(bias), "grad_norm": grad_norm}))


def main() -> None:
    command = sys.argv[1]
    if command == "predict":
        predict(sys.argv[2], sys.argv[3])
    elif command == "fit":
        fit(sys.argv[2])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
