#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs into .gpu/ (ignored by git) for the
# `device` tool: stripped release binaries (hint, hint-worker, the extraction and Shapley benches, the
# decode and write examples), the tiny example
# and 384 generated 500×375 JPEGs in 4 classes. See ../shared/GPU.md. The whole is over the
# 64 MiB a call carries: gpu_check.sh says which paths each of its steps needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release -p hint-coordinator -p hint-worker --bins
# The path of a bench's executable, from cargo's JSON messages.
bench_binary() {
    cargo bench -p hint-worker --bench "$1" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
cargo build --release -p hint-worker --example bench_decode -p hint-common --example bench_writer
extraction=$(bench_binary extraction)
shapley=$(bench_binary shapley)
rm -rf .gpu && mkdir -p .gpu
cp target/release/hint .gpu/hint
cp target/release/hint-worker .gpu/hint-worker
cp "$extraction" .gpu/bench-extraction
cp "$shapley" .gpu/bench-shapley
cp target/release/examples/bench_decode .gpu/bench-decode
cp target/release/examples/bench_writer .gpu/bench-writer
strip .gpu/hint .gpu/hint-worker .gpu/bench-extraction .gpu/bench-shapley .gpu/bench-decode .gpu/bench-writer
cp scripts/gpu_check.sh scripts/gpu_cluster_check.sh scripts/gpu_weights.py scripts/gpu_layout.py .gpu/
.gpu/hint example --out .gpu/example > /dev/null
.venv/bin/python - <<'PY'
import os, numpy as np
from PIL import Image, ImageDraw
rng = np.random.default_rng(0)
for c in range(4):
    os.makedirs(f".gpu/jpegs/class{c}", exist_ok=True)
    for i in range(96):
        h, w = 375, 500
        yy, xx = np.mgrid[0:h, 0:w]
        planes = [(xx * rng.uniform(0.2, 0.6) + yy * rng.uniform(0.2, 0.6) + rng.uniform(0, 255)) % 256
                  for _ in range(3)]
        im = Image.fromarray(np.stack(planes, -1).astype(np.uint8))
        d = ImageDraw.Draw(im)
        for _ in range(6):
            x0, y0 = rng.integers(0, w - 80), rng.integers(0, h - 80)
            d.ellipse([x0, y0, x0 + rng.integers(30, 200), y0 + rng.integers(30, 200)],
                      fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        im.save(f".gpu/jpegs/class{c}/img{i:03d}.jpg", quality=88)
PY
du -sh .gpu
