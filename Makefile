# The two commands of the README: `make demo` and `make test`. Both bootstrap first.
SHELL := bash
.SHELLFLAGS := -o pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/.venv
export LIBTORCH_USE_PYTORCH := 1
# A one-off build (CI, a fresh clone) gains nothing from incremental state: it only costs disk.
export CARGO_INCREMENTAL := 0

# examples/job.toml names this directory (its paths are relative to examples/).
DEMO_DIR := demo-output
HINT_RELEASE := target/release/hint

.PHONY: demo test bootstrap bench bench-host bench-layers bench-sample lint install

bootstrap:
	@scripts/bootstrap.sh

## demo: HINT on the synthetic world through the distributed runtime, embedded: generate the
## world, train the tiny CNN, then `hint run` a coordinator and 2 workers in one process
## (extract → train → shapley → Φ → WSOL → ablation), map six concepts on four images
## (`hint explain`) and on the same images attacked toward cat and bus (`hint attack`), both
## shown in the report, run the saliency sanity check on them (`hint sanity`), and read Φ
## back with pyarrow.
demo: bootstrap
	cargo build --release -p hint-coordinator -p hint-worker
	$(HINT_RELEASE) synth --out $(DEMO_DIR)/world --seed 0 --overwrite
	$(HINT_RELEASE) train-model --images $(DEMO_DIR)/world/images --out $(DEMO_DIR)/tiny_cnn.safetensors --seed 0
	@# A fresh state, so the job is job-0001 (examples/job.toml writes under demo-output/runs).
	rm -rf $(DEMO_DIR)/runs
	$(HINT_RELEASE) run examples/job.toml --workers 2
	@# Concept maps of four images into the job's results/explain/, then the report again.
	rm -rf $(DEMO_DIR)/explain-images && mkdir -p $(DEMO_DIR)/explain-images
	cp $(DEMO_DIR)/world/images/bus/bus_00000.png $(DEMO_DIR)/world/images/cat/cat_00000.png \
		$(DEMO_DIR)/world/images/duck/duck_00000.png $(DEMO_DIR)/world/images/sailboat/sailboat_00000.png \
		$(DEMO_DIR)/explain-images/
	$(HINT_RELEASE) explain --job $(DEMO_DIR)/runs/job-0001 --images $(DEMO_DIR)/explain-images \
		--concepts vehicle,animal,bus,cat,duck,sailboat --boxes $(DEMO_DIR)/world/annotations \
		--masks $(DEMO_DIR)/world/masks
	@# The same images attacked toward cat and bus (targeted PGD): which concepts appear.
	$(HINT_RELEASE) attack --job $(DEMO_DIR)/runs/job-0001 --images $(DEMO_DIR)/explain-images \
		--targets cat,bus --concepts vehicle,animal,bus,cat,duck,sailboat
	@# The saliency sanity check on the same images: each method as the model is destroyed.
	$(HINT_RELEASE) sanity --job $(DEMO_DIR)/runs/job-0001 --images $(DEMO_DIR)/explain-images \
		--methods gradient,gradient_x_activation,guided_backprop,smoothgrad,integrated_gradients
	$(HINT_RELEASE) report --job $(DEMO_DIR)/runs/job-0001
	@echo "pyarrow reads Φ:"
	@.venv/bin/python -c 'import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
		print(t.num_rows, "rows;", t.schema.to_string(show_schema_metadata=False)); print(t.slice(0, 3).to_pylist())' \
		$(DEMO_DIR)/runs/job-0001/results/phi.parquet

## test: formatting, lints, then every test (unit, PyTorch oracles, end to end).
test: bootstrap lint
	cargo build -p hint-coordinator -p hint-worker --bins
	cargo test --workspace 2>&1 | tee target/test.log
	@# One closing line for the whole suite (cargo prints one per test binary).
	@awk '/^test result:/ { p += $$4; f += $$6 } END { print p " passed, " f " failed" }' target/test.log
	@du -sh target | awk '{ print "target directory: " $$1 }'

## install: `hint` and `hint-worker` into $(PREFIX)/bin (cargo's default: ~/.cargo/bin). They
## belong together: `hint` hands the stages that need libtorch to the hint-worker beside it.
PREFIX ?= $(HOME)/.cargo
install: bootstrap
	cargo build --locked --release -p hint-coordinator -p hint-worker
	install -d $(PREFIX)/bin
	install -m 755 target/release/hint target/release/hint-worker $(PREFIX)/bin/

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## bench: extraction throughput of every method against the libtorch floor.
bench: bootstrap
	cargo bench -p hint-worker --bench extraction

## bench-host: the host side of extraction (decode, resize, crop, normalise, batch) against
## PIL on the same generated JPEGs, in one run: images/s of both and the ratio (issue H).
.PHONY: bench-host
bench-host: bootstrap
	cargo build --release -p hint-coordinator -p hint-worker
	.venv/bin/python scripts/bench_host.py

## bench-layers: `hint extract` at three layers in one pass against each layer alone, on the
## same generated JPEGs (ResNet-18, random weights), in one run: seconds and ratios (issue K).
## BENCH_LAYERS_ARGS passes flags, e.g. `make bench-layers BENCH_LAYERS_ARGS="--model vgg16 --layers features.16,features.23,features.30"`.
.PHONY: bench-layers
bench-layers: bootstrap
	cargo build --release -p hint-coordinator -p hint-worker
	.venv/bin/python scripts/bench_layers.py $(BENCH_LAYERS_ARGS)

## bench-sample: the sample stage (`hint sample`) against `cat` on the same generated region
## files (zstd and LZ4; `--row-group-mb 16,64` compares group sizes), page cache dropped before each, in one run: MB/s of both and the ratio (issue I).
## BENCH_ARGS passes flags, e.g. `make bench-sample BENCH_ARGS="--gb 8 --threads 4"`.
.PHONY: bench-sample
bench-sample: bootstrap
	cargo build --release -p hint-coordinator
	.venv/bin/python scripts/bench_sample.py $(BENCH_ARGS)

## bench-classify: `hint classify` on one generated region file (20,000 rows x 512 channels,
## 3 concepts) against scikit-learn's LogisticRegression on the same training rows, in one
## run: wall times, hint's per-phase profile, the ratio (issue I). Needs scikit-learn, which
## the tests do not (`.venv/bin/pip install scikit-learn`). BENCH_CLASSIFY_ARGS passes flags,
## e.g. `make bench-classify BENCH_CLASSIFY_ARGS="--before /path/to/old/hint"`.
.PHONY: bench-classify
bench-classify: bootstrap
	cargo build --release -p hint-coordinator -p hint-worker
	.venv/bin/python scripts/bench_classify.py $(BENCH_CLASSIFY_ARGS)

## soak: 20 jobs back to back on a real coordinator with 3 workers killed with SIGKILL at
## random (seeded) moments; each job's Φ against an undisturbed 1-worker run, the
## coordinator's RSS against growth. About 2 minutes after the build; not part of `make test`.
## SOAK_ARGS passes flags, e.g. `make soak SOAK_ARGS="--seed 7 --kill-coordinator"`.
.PHONY: soak
soak: bootstrap
	cargo build --release -p hint-coordinator -p hint-worker
	.venv/bin/python scripts/soak.py $(SOAK_ARGS)
