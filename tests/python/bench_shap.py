"""The shap library's PermutationExplainer on hint's fixed-mode Shapley game (the side-by-side
half of `cargo bench -p hint-worker --bench shapley`).

The bench writes the game to DIR as .npy files: activations X [N, D], replacement rows R
[N, D], targets y [N] (0/1), the classifier's weight w [D] and bias b [1]. The game is
explained as a function of a coalition mask: v(m) = mean log sigmoid(s * z(m)) with
z(m) = b + R w + (X - R)(m * w) — exactly hint's fixed/marginal/log_likelihood game —
computed in numpy for a batch of masks at once (one matmul). shap sees the mask as the
input: explaining x = ones(D) against the background zeros(D) makes every masked input a
coalition mask.

shap's PermutationExplainer walks each permutation forward and backward (an antithetic pair),
2D + 1 evaluations; its permutations per second count both directions.

Prints one JSON line: permutations, seconds (wall), permutations_per_second, cpu_seconds
(process CPU time, BLAS threads included), permutations_per_cpu_second, sum_of_values (should be
v(all) - v(none)), v_all, v_none, peak_rss_mib, shap version. Exit status 3 when shap is not
installed (the bench then says how to install it).

On a machine without the project's Python (a GPU machine that has only libtorch), the bench
does not run this script: it takes shap's per-permutation wall time measured here, printed as
`shap … s per permutation`, through `--shap-seconds-per-permutation` and says so.
"""
import json
import resource
import sys
import time

import numpy as np

try:
    import shap
except ImportError:
    print(json.dumps({"error": "shap is not installed: .venv/bin/pip install shap"}))
    sys.exit(3)

directory, pairs = sys.argv[1], int(sys.argv[2])
X = np.load(f"{directory}/x.npy").astype(np.float64)
R = np.load(f"{directory}/r.npy").astype(np.float64)
y = np.load(f"{directory}/y.npy")
w = np.load(f"{directory}/w.npy").astype(np.float64)
b = float(np.load(f"{directory}/b.npy")[0])
n, d = X.shape
sign = np.where(y > 0, 1.0, -1.0)
base = b + R @ w                      # z of the empty coalition, [N]
delta_t = np.ascontiguousarray((X - R).T)  # [D, N]


def value(masks):
    """v(S) for a batch of coalition masks [M, D] -> [M]."""
    z = base[None, :] + (masks * w[None, :]) @ delta_t
    return np.mean(-np.logaddexp(0.0, -sign[None, :] * z), axis=1)


masker = shap.maskers.Independent(np.zeros((1, d)), max_samples=1)
explainer = shap.PermutationExplainer(value, masker, seed=0)
ones = np.ones((1, d))
# Warm-up (numba compilation, first-call overheads), not timed.
explainer(ones, max_evals=2 * d + 1, silent=True)
start, cpu_start = time.perf_counter(), time.process_time()
explanation = explainer(ones, max_evals=pairs * (2 * d + 1), silent=True)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
v_all, v_none = value(np.ones((1, d)))[0], value(np.zeros((1, d)))[0]
print(json.dumps({
    "permutations": 2 * pairs,
    "seconds": seconds,
    "permutations_per_second": 2 * pairs / seconds,
    "cpu_seconds": cpu,
    "permutations_per_cpu_second": 2 * pairs / cpu,
    "sum_of_values": float(explanation.values.sum()),
    "v_all": float(v_all),
    "v_none": float(v_none),
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    "shap": shap.__version__,
    "numpy_threads_note": "numpy BLAS uses every core it sees",
}))
