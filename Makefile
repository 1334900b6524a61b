# atrlib — every target bootstraps .venv itself when it is missing or stale.
# torch is installed first and pinned (torch==2.13.0 takes a local CPU wheel; an unpinned
# torch would pull a multi-GB CUDA build). On a GPU machine, install your CUDA torch into
# .venv first and set TORCH_SPEC to it (e.g. make demo TORCH_SPEC='torch==2.13.0').

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.atrlib-installed
TORCH_SPEC ?= torch==2.13.0
AISFX_SPEC ?= aisfx==0.1.2
REFERENCE_SPECS ?= panns-inference==0.1.1 torchlibrosa==0.1.0 panns-at-inference==0.1.4 hear21passt==0.0.26 openbeats==0.1.1 \
  pytorch-metric-learning==2.9.0 open_clip_torch==3.3.0 pycocoevalcap==1.2 aac-metrics==0.5.4
PROFILE ?= demo
TEST_WORKERS ?= auto
export TOKENIZERS_PARALLELISM ?= false
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo readme test test-all bench lab clean-reports smoke

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,notebook,search,sweep,track]"
	# aisfx ships a pretrained sound-effects CNN; its own pins are ancient, so no deps.
	$(BIN)/python -m pip install -q --no-deps "$(AISFX_SPEC)"
	# Test-only reference code (the authors' implementations the towers are proven equal to);
	# --no-deps: their pins pull torchaudio / torchvision, which do not exist for this torch.
	$(BIN)/python -m pip install -q --no-deps $(REFERENCE_SPECS)
	@touch $(STAMP)

demo: $(STAMP)  ## every stage notebook on the embedded dataset -> reports/demo/index.html
	$(BIN)/python -m atrlib run --profile $(PROFILE) --out reports/$(PROFILE) --overwrite
	@if [ "$(PROFILE)" = demo ]; then echo "== this run against the README's numbers (bands: their 95 % CIs)"; \
	  $(BIN)/python scripts/readme_tables.py reports/demo --check tests/fixtures/readme_expected.json \
	  || echo "(outside a band: numbers differ more than the README's intervals say; see the table above)"; fi

readme: $(STAMP)  ## the README's results tables (and their record) from reports/demo (run `make demo` first)
	$(BIN)/python scripts/readme_tables.py reports/demo --record tests/fixtures/readme_expected.json --write README.md

smoke: $(STAMP)  ## the tiny profile the tests use
	$(BIN)/python -m atrlib run --profile smoke --out reports/smoke --overwrite

test: $(STAMP)  ## the layers contract, then the fast suite (no slow, no gpu) on every core
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "not slow and not gpu" -q -n $(TEST_WORKERS) --dist loadfile --durations=10

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## benchmark scripts that print tables
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lab: $(STAMP)  ## open the notebooks in JupyterLab
	$(BIN)/python -m jupyter lab notebooks/

clean-reports:
	rm -rf reports/*/
