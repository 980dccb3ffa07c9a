# Switchyard: `make run` (the local stack) and `make test` (lint + tests) are all you need.
# Works on a fresh machine with python3 (3.11), node and apt.

PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-requirements

.PHONY: venv web chromium checkov bench-requirements run test test-fast test-timed lint bench run-benches clean redrive index-accounts package deploy proof

venv: $(STAMP)

# Python keeps the bytecode it compiles (in .venv and the gitignored __pycache__ folders) even
# where the shell says PYTHONDONTWRITEBYTECODE: the suite starts some 90 Python processes
# (workers, local stacks, benches, moto children), and without the cache each compiled botocore
# and moto from source again, a tenth of the suite's CPU.
unexport PYTHONDONTWRITEBYTECODE

# Re-installs only when a requirements file changed (or the venv is new).
# Packages go in with uv (pinned here, from PyPI through the venv's own pip), not pip: the
# same versions from the same index (both venvs' `pip freeze` compared equal), in ~4 s where
# pip took ~41 s, the longest step before the tests. Neither byte-compiles what it installs:
# Python compiles the modules the tests import when they first do, once.
# pip stays in the venv below 26.3: chalice 1.34 runs it to package and requires that.
UV_VERSION := 0.13.9
UV         := $(BIN)/uv
# A stamp per uv version: a venv made before uv (or with another version) gets it, and its
# packages installed again, on the next make.
UV_STAMP   := $(VENV)/.stamp-uv-$(UV_VERSION)
# A working venv in folder $(1), made anew when it has none. Should python3-venv be missing,
# apt-get installs it (a second apt-get at the same time waits for the first's lock).
define new_venv
	@if ! $(1)/bin/python -m pip --version >/dev/null 2>&1; then \
	  rm -rf $(1); \
	  if ! $(PYTHON) -m venv $(1); then \
	    echo "'$(PYTHON) -m venv' failed; installing python3-venv with apt-get"; \
	    rm -rf $(1); \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q && \
	    $$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-venv && \
	    $(PYTHON) -m venv $(1) || exit 1; \
	  fi; \
	fi
endef

$(UV_STAMP):
	$(call new_venv,$(VENV))
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	@touch $@

$(STAMP): requirements.txt requirements-dev.txt $(UV_STAMP)
	$(UV) pip install -q --python $(BIN)/python 'pip<26.3' -r requirements-dev.txt
	@touch $@

# The web app (web/, TypeScript + Vite): npm ci only when package-lock.json changed (a stamp
# like the venv's), a rebuild only when a source changed; the build fails over the JS budget.
WEB_STAMP := web/node_modules/.stamp-package-lock
WEB_SRC   := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json web/scripts/size.mjs

web: web/dist/index.html

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	@touch $@

web/dist/index.html: $(WEB_STAMP) $(WEB_SRC)
	cd web && npm run build && npm run size

# checkov in its own venv (its dependencies clash with ours), re-installed only when
# requirements-checkov.txt changes; tests/test_package.py runs it on the merged template.
# It needs only .venv's uv, so it installs after .venv (seconds) and beside lint and the web build.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.stamp-requirements

checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt | $(UV_STAMP)
	$(call new_venv,$(CHECKOV_VENV))
	$(UV) pip install -q --python $(CHECKOV_VENV)/bin/python -r requirements-checkov.txt
	@touch $@

# Browser tests drive Debian's chromium (playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium missing; installing it with apt-get"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

run: venv web
	$(BIN)/python -m devserver

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy devserver

# The benches also need requirements-bench.txt (the peer libraries they time against).
BENCH_STAMP := $(VENV)/.stamp-requirements-bench

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(UV) pip install -q --python $(BIN)/python -r requirements-bench.txt
	@touch $@

bench-requirements: $(BENCH_STAMP)

# pytest exit code 5 means "no tests collected": not a failure. Several workers (pytest-xdist),
# each with its own moto server; a file's tests stay on one worker (module fixtures).
# The benches that count requests (or compare memory) run inside pytest (tests/bench/), beside
# the suite, and fail it when a budget fails. The timed benches run after pytest, in quick
# mode, once the suite no longer loads the machine; they run even when pytest failed (one run
# reports both), and a bench over budget, or one that crashed, fails the target.
# `make test` runs every timed bench (TEST_BENCHES, idle: cold start ~40-65 s, the HTTP layer
# ~2 s, the import ~45-50 s, the real-time latency ~27 s, the collector's throughput ~17-19 s),
# so the import's peer libraries (requirements-bench.txt) are installed beside lint.
# One worker more than cores: a worker waits on its moto thread, a browser or a child process
# part of the time (2 workers left a third of 2 cores idle). A fourth worker on 2 cores was
# faster on a warm checkout but showed no gain on fresh clones, what CI runs (tests/README.md,
# "Harness decisions"). Files are handed out in
# tests/conftest.py's order, longest first (--no-loadscope-reorder: xdist would otherwise
# order them by their number of tests).
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
# The checks and builds pytest needs run side by side (-j2): .venv and the web build first,
# then lint, checkov's venv and the bench requirements once .venv is there.
PREREQUISITES := lint web chromium checkov bench-requirements
TEST_BENCHES = $(TIMED_BENCHES)
# What a phase cost the whole machine, printed after the setup, pytest and each bench: wall seconds
# and the CPU seconds every process and the kernel spent (/proc/stat's user, nice, system, irq and
# softirq time; not steal, which a hypervisor gave to others). The wall cannot fall below the CPU
# over the cores, so these lines show how far a phase can still be sped up by running more at
# once and how far only by doing less. Without /proc/stat the CPU reads "n/a".
MACHINE_CPU = awk '/^cpu /{printf "%.0f\n", $$2+$$3+$$4+$$7+$$8; exit}' /proc/stat 2>/dev/null
# The CPUs /proc/stat counts (the whole machine, whatever this process's affinity).
CORES := $(shell grep -c '^cpu[0-9]' /proc/stat 2>/dev/null)
CLOCK_TICKS := $(shell getconf CLK_TCK 2>/dev/null || echo 100)
NOW = date +%s.%N
# $(call mark,T,C): shell variables T and C set to the clock and the machine's CPU now
mark = $(1)=$$($(NOW)); $(2)=$$($(MACHINE_CPU))
# $(call spent,LABEL,START,CPU_START): "LABEL 43.0 s; machine CPU 39.5 s, 0.92 of 2 cores"
spent = awk -v t0="$(2)" -v c0="$(3)" -v c1="$$($(MACHINE_CPU))" -v t1="$$($(NOW))" -v n="$(CORES)" -v hz=$(CLOCK_TICKS) \
  'BEGIN { w = t1 - t0; if (c0 == "" || c1 == "" || n + 0 == 0) { printf "$(1) %.1f s; machine CPU n/a\n", w; exit } \
           c = (c1 - c0) / hz; printf "$(1) %.1f s; machine CPU %.1f s, %.2f of %d cores\n", w, c, (w > 0 ? c / w : 0), n }'
# pytest, then the quick benches $(1); fails if either failed.
define suite_then_benches
	@$(call mark,t0,c0); \
	$(MAKE) --no-print-directory -j2 $(PREREQUISITES); rc=$$?; \
	$(call spent,setup took,$$t0,$$c0); exit $$rc
	@$(call mark,t0,c0); \
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; \
	$(call spent,pytest took,$$t0,$$c0); \
	$(MAKE) --no-print-directory run-benches BENCH_QUICK=1 BENCHES="$(1)"; brc=$$?; \
	[ $$rc -eq 0 ] && [ $$brc -eq 0 ]
endef

test:
	$(call suite_then_benches,$(TEST_BENCHES))

# The run pipeline's unit tests on the in-memory store, the services' and the store contract's
# in-memory half: seconds, no moto (docs/testing.md, "two layers"). `make test` runs them too.
FAST_TESTS := tests/engine/unit tests/services tests/store/test_repo_contract.py
test-fast: venv
	$(BIN)/pytest -n 0 -p no:hypothesispytest -p no:schemathesis -p no:locust -p no:anyio \
	  $(FAST_TESTS) -k "not dynamo and not moto"

# Every timed bench now runs in `make test`; the old name stays for scripts that call it.
test-timed: test

# The proof suites (tests/proof/) at full size, and the health sweep over 2,000 authorizations
# (make test runs 300); docs/proof.md gets the figures of this run.
proof: venv web chromium
	rm -rf .proof
	SWITCHYARD_PROOF=full SWITCHYARD_SWEEP_SCALE=2000 $(BIN)/pytest tests/proof \
	  tests/api/test_health_sweep_scale.py --timeout=3600; rc=$$?; \
	$(BIN)/python -m tests.proof.report; exit $$rc

# Every bench runs even when one misses its budget; the target fails at the end if any did.
# BENCH_QUICK=1 (what `make test` runs): small sizes, the same budgets. bench/awsnet.py (the
# AWS emulation the benches share), bench/export_setup.py (the export benches' shared setup)
# and bench/moto_speed.py are not benches. A bench that
# ends without a RESULT line (it crashed) fails too. BENCHES picks some: make bench BENCHES=bench/cold_start.py
BENCH_QUICK ?=
BENCHES ?= $(filter-out bench/awsnet.py bench/export_setup.py bench/moto_speed.py,$(sort $(wildcard bench/*.py)))
# Timed against a peer on this machine: run after pytest, not beside it.
TIMED_BENCHES := bench/cold_start.py bench/http_overhead.py bench/realtime_latency.py bench/import_throughput.py \
  bench/collect_throughput.py
# A bench that never ends (a thread left running) is killed and fails rather than hold CI.
BENCH_TIMEOUT ?= 600
# Where each bench's output is kept while it is checked (a test of this loop points it elsewhere).
BENCH_OUT ?= .bench-out.txt
bench: $(BENCH_STAMP)
	@$(MAKE) --no-print-directory run-benches

# The loop of `make bench`, without installing the bench requirements (`make test` installs
# them first, through bench-requirements).
run-benches: venv
	@failed=""; $(call mark,start,cstart); for f in $(BENCHES); do \
	  echo "== $$f"; $(call mark,t0,c0); \
	  BENCH_QUICK=$(BENCH_QUICK) timeout -k 10 $(BENCH_TIMEOUT) $(BIN)/python $$f > $(BENCH_OUT) 2>&1; rc=$$?; \
	  grep -av '^{"level"' $(BENCH_OUT); \
	  [ $$rc -eq 124 ] && echo "   killed after $(BENCH_TIMEOUT) s"; \
	  grep -aq '^RESULT ' $(BENCH_OUT) || echo "   no RESULT line: the bench crashed"; \
	  grep -aq '^RESULT PASS' $(BENCH_OUT) && [ $$rc -eq 0 ] || failed="$$failed $$f"; \
	  $(call spent,   took,$$t0,$$c0); \
	done; rm -f $(BENCH_OUT); \
	$(call spent,benches took,$$start,$$cstart); \
	if [ -n "$$failed" ]; then echo "benches over budget:$$failed"; exit 1; fi

# The stage's merged CloudFormation template and deployment zip in dist/ (no AWS account
# needed): chalice package + infra/template.json + infra/edge.json (infra/package.py), then cfn-lint.
STAGE ?= prod
package: venv
	rm -rf dist
	$(BIN)/python infra/package.py --stage $(STAGE) dist
	$(BIN)/cfn-lint dist/template.json
	@ls -l dist/deployment.zip dist/template.json

# One command from a clone to a running stage: needs AWS credentials (boto3's usual chain) and
# a region (AWS_REGION/AWS_DEFAULT_REGION, us-east-1 by default). CloudFormation stack
# switchyard-$(STAGE), then the SPA to its bucket and a CloudFront invalidation (infra/deploy.py).
deploy: package web
	$(BIN)/python infra/deploy.py --stage $(STAGE)

# Dead letters back to their queues (AWS settings from the environment; QUEUES=runs health alerts).
# See docs/operations.md first: a message that keeps failing comes back to the DLQ.
redrive: venv
	$(BIN)/python infra/redrive.py --stage $(STAGE) $(QUEUES)

# Operator migration, once per stage: accounts made before the account index get their entry
# (one Scan), then every account its API key (SWITCHYARD_USAGE_PLAN_ID from the stack's outputs).
index-accounts: venv
	$(BIN)/python infra/index_accounts.py --stage $(STAGE)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache dist .proof
	find . \( -name .git -o -name node_modules \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
