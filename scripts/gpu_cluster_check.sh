#!/usr/bin/env bash
# The distributed runtime on a GPU machine, run over what scripts/gpu_pack.sh put in .gpu/:
#   run(command="bash .gpu/gpu_cluster_check.sh", carry=[".gpu"])
# 1. The demo's job (synthetic world, tiny CNN) with `hint run --workers 2` on cuda and on cpu:
#    both must succeed; Φ of the two is compared (not bit-identical: the classifiers are fitted
#    on different devices) by the largest |Δφ| and the top-5 agreement per concept.
# 2. The same job through real processes: `hint coordinator` + 2 `hint-worker --device cuda`.
# 3. VGG-16 features.26 on 3,840 JPEGs as a job: 2 workers sharing the GPU, Shapley swept on
#    the device; wall time, CPU use and memory of the whole job.
set -uo pipefail
G=.gpu
OUT=${OUT:-/tmp/gpu-out}
C=/tmp/cluster
mkdir -p "$OUT" "$C"
T=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')
export LD_LIBRARY_PATH=$T/lib:${LD_LIBRARY_PATH:-}
nvidia-smi -L | tee "$OUT/device.txt"
step() { echo "== $* ($(date +%T))" | tee -a "$OUT/steps.log"; }

job() { # job FILE ROOT WEIGHTS IMAGES HIERARCHY LAYER EXTRA
    cat > "$1" <<TOML
[job]
name = "gpu-check"
[model]
architecture = "${8:-tiny_cnn}"
weights = "$3"
layer = "$6"
[data]
images = "$4"
hierarchy = "$5"
[extract]
method = "gradient_x_activation"
background_ratio = 0.25
images_per_task = ${9:-500}
[classify]
concepts_per_task = 8
[shapley]
permutations = 64
permutations_per_task = 16
$7
[storage]
root = "$2"
TOML
}

step "1. demo job, hint run --workers 2, cuda then cpu"
$G/hint synth --out $C/world --seed 0 > /dev/null
/usr/bin/time -f "train-model %e s" $G/hint train-model --images $C/world/images \
    --out $C/tiny_cnn.safetensors --seed 0 --threads 16 --device cpu 2>&1 | tail -3 | tee -a "$OUT/steps.log"
for dev in cuda cpu; do
    job $C/job-$dev.toml $C/runs-$dev $C/tiny_cnn.safetensors $C/world/images $C/world/hierarchy.yaml features.7 ""
    /usr/bin/time -v $G/hint run $C/job-$dev.toml --workers 2 --device $dev > "$OUT/run-$dev.log" 2>&1 ||
        echo "FAILED hint run $dev" | tee -a "$OUT/steps.log"
    grep -E "succeeded|failed|Elapsed|Maximum resident" "$OUT/run-$dev.log" | tee -a "$OUT/steps.log"
done
python3 - $C/runs-cuda/job-0001/results/phi.csv $C/runs-cpu/job-0001/results/phi.csv <<'PY' | tee -a "$OUT/steps.log"
import csv, sys, collections
def load(p):
    phi = collections.defaultdict(dict)
    for r in csv.DictReader(open(p)):
        phi[r["concept_name"]][int(r["neuron"])] = float(r["phi"])
    return phi
a, b = load(sys.argv[1]), load(sys.argv[2])
worst = max(abs(a[c][d] - b[c][d]) for c in a for d in a[c])
top = lambda p: set(sorted(p, key=lambda d: -p[d])[:5])
agree = sum(len(top(a[c]) & top(b[c])) for c in a) / (5 * len(a))
print(f"cuda vs cpu workers: {len(a)} concepts, max |dphi| = {worst:.3g}, top-5 agreement {agree:.1%}")
PY

step "2. the same job through processes: hint coordinator + 2 hint-worker --device cuda"
job $C/job-proc.toml $C/runs-proc $C/tiny_cnn.safetensors $C/world/images $C/world/hierarchy.yaml features.7 ""
$G/hint coordinator --listen 127.0.0.1:0 --state $C/state --address-file $C/address > "$OUT/coordinator.log" 2>&1 &
COORD=$!
while [ ! -f $C/address ]; do sleep 0.1; done
URL=$(cat $C/address)
for k in 0 1; do HINT_LOG=warn $G/hint-worker --coordinator "$URL" --device cuda --name gpu-$k > "$OUT/worker-$k.log" 2>&1 & done
/usr/bin/time -f "submit --wait %e s" $G/hint submit $C/job-proc.toml --coordinator "$URL" --wait 2>&1 | tail -8 | tee -a "$OUT/steps.log"
cmp $C/runs-proc/job-0001/results/phi.csv $C/runs-cuda/job-0001/results/phi.csv &&
    echo "processes on cuda = hint run on cuda, bit for bit" | tee -a "$OUT/steps.log"
kill -TERM $(jobs -p) 2>/dev/null; wait

step "3. VGG-16 features.26, 3,840 JPEGs 500x375, 2 workers on one GPU, Shapley on the device"
python3 $G/gpu_weights.py vgg16 $C/vgg16.safetensors
(echo "path,label"; for r in $(seq 10); do
    for f in $G/jpegs/*/*.jpg; do echo "$(realpath "$f"),$(basename "$(dirname "$f")")"; done
done) > $C/manifest.csv
printf 'children:\n  whole: [left, right]\n  left: [class0, class1]\n  right: [class2, class3]\n' > $C/h.yaml
job $C/job-vgg.toml $C/runs-vgg $C/vgg16.safetensors $C/manifest.csv $C/h.yaml features.26 \
    "sweep_on_device = true" vgg16 640
sed -i 's/^\[extract\]/[extract]\nbatch_size = 64\nactivation_type = "f16"/' $C/job-vgg.toml
/usr/bin/time -v $G/hint run $C/job-vgg.toml --workers 2 --device cuda > "$OUT/run-vgg.log" 2>&1 ||
    echo "FAILED vgg job" | tee -a "$OUT/steps.log"
grep -E "succeeded|failed|regions|Elapsed|Maximum resident|Percent of CPU" "$OUT/run-vgg.log" | tee -a "$OUT/steps.log"
tar -C "$OUT" -czf "$OUT/logs.tar.gz" --exclude logs.tar.gz . 2>/dev/null
