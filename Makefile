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

## demo: a generated example (images + seeded tiny CNN) through `hint extract`.
demo: bootstrap
	cargo build --release -p hint-coordinator
	$(HINT_RELEASE) example --out $(DEMO_DIR)/example
	$(HINT_RELEASE) extract --model tiny_cnn --weights $(DEMO_DIR)/example/tiny_cnn.safetensors \
		--layer features.4 --images $(DEMO_DIR)/example/images --method gradient_x_activation \
		--out $(DEMO_DIR)/regions --overwrite
	@echo "pyarrow reads it:"
	@.venv/bin/python -c 'import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
		m = t.schema.metadata; print(t.num_rows, "rows;", t.schema.to_string(show_schema_metadata=False)); \
		print({k.decode(): m[k].decode() for k in (b"model", b"layer", b"method", b"D", b"H", b"W")})' \
		$(DEMO_DIR)/regions/regions-00000.parquet

## test: formatting, lints, then every test (unit, PyTorch oracles, end to end).
test: bootstrap lint
	cargo build -p hint-coordinator
	cargo test --workspace 2>&1 | tee target/test.log
	@# One closing line for the whole suite (cargo prints one per test binary).
	@awk '/^test result:/ { p += $$4; f += $$6 } END { print p " passed, " f " failed" }' target/test.log

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## bench: extraction throughput of every method against the libtorch floor.
bench: bootstrap
	cargo bench -p hint-worker --bench extraction
