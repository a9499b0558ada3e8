#!/usr/bin/env bash
# The GPU check, run on the `device` machine over what scripts/gpu_pack.sh put in .gpu/:
#   run(command="bash .gpu/gpu_check.sh", carry=[".gpu"])
# Writes logs and the small tiny_cnn region files under $OUT; compare them here with
# scripts/gpu_compare.py.
set -uo pipefail
G=.gpu
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT/tiny"
T=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')
export LD_LIBRARY_PATH=$T/lib:${LD_LIBRARY_PATH:-}
nvidia-smi -L | tee "$OUT/device.txt"
step() { echo "== $*" | tee -a "$OUT/steps.log"; }

step "1. tiny_cnn, every method, cpu and cuda"
for m in gradient gradient_x_activation guided_backprop smoothgrad integrated_gradients; do
    for dev in cpu cuda; do
        $G/hint extract --model tiny_cnn --weights $G/example/tiny_cnn.safetensors \
            --layer features.4 --images $G/example/images --method $m --samples 8 --steps 8 \
            --device $dev --out "$OUT/tiny/$m-$dev" > "$OUT/tiny/$m-$dev.log" 2>&1 ||
            echo "FAILED $m $dev" | tee -a "$OUT/steps.log"
    done
done

# Only a limited number of files come back from the device: one archive.
tar -C "$OUT" -czf "$OUT/tiny.tar.gz" tiny && rm -rf "$OUT/tiny"

step "2. hint extract, VGG-16 features.26, 3840 JPEGs 500x375 (the 384 ten times), batch 64, cuda"
python3 $G/gpu_weights.py vgg16 /tmp/vgg16.safetensors
# A manifest listing every JPEG ten times: a run long enough that start-up does not dominate.
(echo "path,label"; for r in $(seq 10); do
    for f in $G/jpegs/*/*.jpg; do echo "$(realpath "$f"),$(basename "$(dirname "$f")")"; done
done) > /tmp/manifest.csv
for method in gradient smoothgrad; do
    /usr/bin/time -v $G/hint extract --model vgg16 --weights /tmp/vgg16.safetensors --layer features.26 \
        --images /tmp/manifest.csv --method $method --samples 20 --batch-size 64 --device cuda \
        --background-ratio 0.1 --activation-type f16 --out /tmp/vgg-$method \
        > "$OUT/vgg16-extract-$method.log" 2>&1 || echo "FAILED vgg extract $method" | tee -a "$OUT/steps.log"
    grep -E "extracted|regions:|Elapsed|Maximum resident|Percent of CPU" "$OUT/vgg16-extract-$method.log"
done

step "3. bench: VGG-16 features.26 batch 64, every method (samples 20, steps 20)"
$G/bench-extraction --model vgg16 --layer features.26 --batch 64 --iters 3 --device cuda \
    --samples 20 --steps 20 2>&1 | tee "$OUT/bench-vgg16.log"
step "4. bench: VGG-19 features.30 and ResNet-50 layer3, batch 64, gradient"
$G/bench-extraction --model vgg19 --layer features.30 --batch 64 --iters 5 --device cuda \
    --methods gradient,guided_backprop 2>&1 | tee "$OUT/bench-vgg19.log"
$G/bench-extraction --model resnet50 --layer layer3 --batch 64 --iters 5 --device cuda \
    --methods gradient,guided_backprop 2>&1 | tee "$OUT/bench-resnet50.log"
step "done"
