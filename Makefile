# Two entry points (see README): `make demo` and `make test`. Both create .venv if missing.
.PHONY: demo test setup setup-dev vllm-up vllm-down bench

CATALOG ?= var/catalog
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

# safety (NudeNet) is part of the default: the default policy holds unscreened images for review.
setup:
	@scripts/bootstrap.sh lite,vllm,safety

setup-dev:
	@scripts/bootstrap.sh lite,vllm,ocr,safety,parquet,metrics,ray,eval,serve,dev

demo: setup
	.venv/bin/caption-agent ingest examples/catalog.jsonl --catalog $(CATALOG)
	$(PY) examples/quickstart.py --catalog $(CATALOG)

test: setup-dev
	$(PY) -P -m pytest -q $(PYTEST_ARGS)  # -P: the repo root is not on sys.path, so tests import the installed package

vllm-up: setup
	$(PY) scripts/vllm_server.py setup && $(PY) scripts/vllm_server.py convert && $(PY) scripts/vllm_server.py start

vllm-down:
	$(PY) scripts/vllm_server.py stop

bench: setup-dev
	$(PY) benchmarks/run_all.py --quick
