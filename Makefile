# The two commands of the README: `make demo` and `make test`. Both bootstrap first.
SHELL := bash
.SHELLFLAGS := -o pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/.venv
export LIBTORCH_USE_PYTORCH := 1

DEMO_DIR ?= demo-output
HINT_RELEASE := target/release/hint

.PHONY: demo test bootstrap bench lint

bootstrap:
	@scripts/bootstrap.sh

## demo: HINT on one machine, on the synthetic world: generate it, train the tiny CNN,
## extract responsible regions, train the concept classifiers, score neurons (Φ).
demo: bootstrap
	cargo build --release -p hint-coordinator
	$(HINT_RELEASE) synth --out $(DEMO_DIR)/world --seed 0 --overwrite
	$(HINT_RELEASE) train-model --images $(DEMO_DIR)/world/images --out $(DEMO_DIR)/tiny_cnn.safetensors --seed 0
	$(HINT_RELEASE) concepts --images $(DEMO_DIR)/world/images --hierarchy $(DEMO_DIR)/world/hierarchy.yaml
	$(HINT_RELEASE) extract --model tiny_cnn --weights $(DEMO_DIR)/tiny_cnn.safetensors \
		--layer features.7 --images $(DEMO_DIR)/world/images --method gradient_x_activation \
		--background-ratio 0.25 --out $(DEMO_DIR)/regions --overwrite
	$(HINT_RELEASE) classify --regions $(DEMO_DIR)/regions --hierarchy $(DEMO_DIR)/world/hierarchy.yaml \
		--out $(DEMO_DIR)/classifiers --overwrite
	$(HINT_RELEASE) shapley --classifiers $(DEMO_DIR)/classifiers --permutations 64 --out $(DEMO_DIR)/phi --overwrite
	@echo "pyarrow reads Φ:"
	@.venv/bin/python -c 'import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
		print(t.num_rows, "rows;", t.schema.to_string(show_schema_metadata=False)); print(t.slice(0, 3).to_pylist())' \
		$(DEMO_DIR)/phi/phi.parquet

## test: formatting, lints, then every test (unit, PyTorch oracles, end to end).
test: bootstrap lint
	cargo build -p hint-coordinator -p hint-worker --bins
	cargo test --workspace 2>&1 | tee target/test.log
	@# One closing line for the whole suite (cargo prints one per test binary).
	@awk '/^test result:/ { p += $$4; f += $$6 } END { print p " passed, " f " failed" }' target/test.log

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## bench: extraction throughput of every method against the libtorch floor.
bench: bootstrap
	cargo bench -p hint-worker --bench extraction
