# Two commands on a fresh clone: `make demo` (runtime only, no torch) and `make test` (everything).
PYTHON ?= python3
RUNTIME_VENV := .venv-runtime
FULL_VENV := .venv
SOURCES := pyproject.toml $(shell find edge_cam export -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: demo test lint test-runtime test-full bench bench-quick clean

demo: $(RUNTIME_VENV)/.installed
	@$(RUNTIME_VENV)/bin/edge-cam demo

# Both environments install side by side first (mostly waiting on disk and the package index).
test:
	@start=$$(date +%s); $(MAKE) --no-print-directory -j2 $(FULL_VENV)/.installed $(RUNTIME_VENV)/.installed && \
	$(MAKE) --no-print-directory lint test-runtime test-full bench-quick && \
	echo "make test: $$(( ($$(date +%s) - start) / 60 )) min $$(( ($$(date +%s) - start) % 60 )) s"

# Every figure the README and benchmarks/README.md quote, regenerated, with the pages (minutes to an
# hour). QUICK=1: each benchmark small, into a scratch folder: proves they run and the pages build.
bench: $(FULL_VENV)/.installed
	$(FULL_VENV)/bin/python benchmarks/run_all.py $(if $(QUICK),--quick)

bench-quick:
	@$(MAKE) --no-print-directory bench QUICK=1

# Lint, types and import contracts (pyproject's [tool.importlinter]) of everything we ship and test
# (ruff, mypy and import-linter come with the dev extra).
lint: $(FULL_VENV)/.installed
	$(FULL_VENV)/bin/ruff check edge_cam export tests benchmarks scripts
	$(FULL_VENV)/bin/mypy
	$(FULL_VENV)/bin/lint-imports --no-cache

# The board's environment: numpy + onnxruntime + OpenCV from a regular (wheel) install, no torch.
# Its pass over tests/runtime proves edge_cam never needs torch. The tests (not the runtime) need
# jsonschema: every event they make is held to the shipped schema (tests/runtime/event_check.py); and
# pytest-xdist: many of them wait on brokers, browsers and child processes, so three run at a time
# (on two cores: 70 s against 80 s with two, measured).
test-runtime: $(RUNTIME_VENV)/.installed
	cd tests && EDGE_CAM_TORCH_FREE=1 ../$(RUNTIME_VENV)/bin/python -m pytest runtime -q -p no:cacheprovider --durations=15 -n 3

# The workstation's environment: editable install with the export and dev extras; the export tests
# run on every core (pytest-xdist: the workers share one export of each real teacher). tests/runtime ran
# in the board's environment above; of those, only the ones that need a dev extra run here (marked
# workstation: OpenVINO, jsonschema).
test-full: $(FULL_VENV)/.installed
	$(FULL_VENV)/bin/python -m pytest tests/export -q -p no:cacheprovider --durations=25 -n auto
	$(FULL_VENV)/bin/python -m pytest tests/runtime -m workstation -q -p no:cacheprovider

# pip's own chatter goes to install.log (shown whole if the install fails): a first run prints our lines only.
$(RUNTIME_VENV)/.installed: $(SOURCES)
	@test -x $(RUNTIME_VENV)/bin/python || $(PYTHON) -m venv $(RUNTIME_VENV)
	@echo "installing the runtime into $(RUNTIME_VENV) (log: $(RUNTIME_VENV)/install.log)"
	@{ $(RUNTIME_VENV)/bin/python -m pip install -q --upgrade pip && \
	   $(RUNTIME_VENV)/bin/python -m pip install -q --force-reinstall --no-deps . && \
	   $(RUNTIME_VENV)/bin/python -m pip install -q '.[mqtt,tflite,onnx]' pytest pytest-xdist jsonschema; \
	 } > $(RUNTIME_VENV)/install.log 2>&1 || { cat $(RUNTIME_VENV)/install.log; exit 1; }
	@touch $@

$(FULL_VENV)/.installed: pyproject.toml
	@test -x $(FULL_VENV)/bin/python || $(PYTHON) -m venv $(FULL_VENV)
	@echo "installing the workstation environment into $(FULL_VENV) (torch: minutes; log: $(FULL_VENV)/install.log)"
	@{ $(FULL_VENV)/bin/python -m pip install -q --upgrade pip && \
	   $(FULL_VENV)/bin/python -m pip install -q -e '.[export,mqtt,dev,tflite,tflite-export,bench]' && \
	   $(FULL_VENV)/bin/python -m pip install -q --no-deps 'grad-cam>=1.5'; \
	 } > $(FULL_VENV)/install.log 2>&1 || { cat $(FULL_VENV)/install.log; exit 1; }
	@touch $@

clean:
	rm -rf $(RUNTIME_VENV) $(FULL_VENV) build *.egg-info edge-cam-demo
