# Two entry points (see README): `make demo` and `make test`. Both create .venv if missing.
.PHONY: demo test test-vision lint lint-site setup setup-dev vllm-up vllm-down bench

CATALOG ?= var/catalog
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

# safety (NudeNet) is part of the default: the default policy holds unscreened images for review. The default has no
# torch (onnx extra: the ONNX exports on onnxruntime); setup-dev adds lite (torch backends) for the tests.
setup:
	@scripts/bootstrap.sh onnx,vllm,safety

setup-dev:
	@scripts/bootstrap.sh lite,vllm,ocr,safety,parquet,metrics,ray,datasets,eval,serve,dev

demo: setup
	.venv/bin/caption-agent ingest examples/catalog.jsonl --catalog $(CATALOG)
	$(PY) examples/quickstart.py --catalog $(CATALOG)

test: setup-dev
	$(PY) -P -m pytest -q $(PYTEST_ARGS)  # -P: the repo root is not on sys.path, so tests import the installed package

# The VLM presets whose processors need torchvision, in their own venv (.venv-vision: CUDA torch 2.14.1 + torchvision).
test-vision:
	scripts/vision_venv.sh test

# Static checks. import-linter and mypy read a regular install (.lint-site): they cannot follow the editable
# install's finder, which maps prompts/, retrieval/ and policies/ into caption_agent. The build uses a throw-away
# build folder (DIST_EXTRA_CONFIG), so files removed from the repo never linger in the checked copy.
LINT_SITE := .lint-site

lint-site:
	@rm -rf $(LINT_SITE); tmp=$$(mktemp -d); printf '[build]\nbuild_base = %s\n' "$$tmp" > "$$tmp/setup.cfg"; \
	DIST_EXTRA_CONFIG="$$tmp/setup.cfg" $(PY) -m pip install -q --no-deps --no-build-isolation --target $(LINT_SITE) . ; \
	rc=$$?; rm -rf "$$tmp"; exit $$rc

lint: setup-dev lint-site
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	cd $(LINT_SITE) && PYTHONPATH=$$PWD ../.venv/bin/lint-imports --config ../pyproject.toml --no-cache
	cd $(LINT_SITE) && ../.venv/bin/mypy --config-file ../pyproject.toml --cache-dir ../.mypy_cache -p caption_agent

vllm-up: setup-dev  # `convert` turns the bundled GGUF into a HF folder with torch + transformers (the lite extra)
	$(PY) scripts/vllm_server.py setup && $(PY) scripts/vllm_server.py convert && $(PY) scripts/vllm_server.py start

vllm-down:
	$(PY) scripts/vllm_server.py stop

bench: setup-dev
	$(PY) benchmarks/run_all.py --quick
