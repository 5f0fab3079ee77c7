# gdbench — the front door. On a fresh Debian machine, as root:
#   make bench-all   the orchestrator's env, Docker engine if absent, the default images, full sweep, report
#   make test        Python env, Docker engine, CPU images, lint and the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(abspath $(VENV))/bin/python
# The light host environment of bench-all, smoke and doctor: the orchestrator only (frameworks run in images).
HOST_VENV ?= .venv-host
HPY := $(abspath $(HOST_VENV))/bin/python
RESULTS ?= results
RUN_ID ?= $(shell date -u +%Y%m%dT%H%M%SZ)
RUN_DIR := $(RESULTS)/$(RUN_ID)
PYTEST_ARGS ?=

.PHONY: help venv host-venv gpu-proof system-deps docker slurm test test-cuda lint bench bench-all bench-fleet bench-cluster doctor smoke wheel \
	clean-containers clean

help:  ## list targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

venv: $(VENV)/.installed  ## the project's Python environment (orchestrator, tests, every framework's CPU build)

# One recipe for both environments: $(1) the folder, $(2) its pinned requirements.
define make_venv
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON): apt-get install -y python3 python3-venv" >&2; exit 1; }
	$(PYTHON) -m venv $(1)
	$(abspath $(1))/bin/python -m pip install -q --upgrade pip
	$(abspath $(1))/bin/python -m pip install -q -r $(2)
	$(abspath $(1))/bin/python -m pip install -q --no-deps -e .
	@touch $(1)/.installed
endef

$(VENV)/.installed: pyproject.toml requirements-dev.txt
	$(call make_venv,$(VENV),requirements-dev.txt)

host-venv: $(HOST_VENV)/.installed  ## the orchestrator's own environment (no framework: each runs in its image)

$(HOST_VENV)/.installed: pyproject.toml requirements-host.txt
	$(call make_venv,$(HOST_VENV),requirements-host.txt)

system-deps:  ## Debian packages the images and tests need (debootstrap, chromium, docker-compose, iproute2, openssl)
	@missing=""; for p in debootstrap chromium docker-compose iproute2 openssl; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

docker:  ## install (if absent) and start the Docker engine, and wait for it
	bash scripts/ensure-docker.sh

slurm:  ## Slurm 22.05 daemons, clients, munge and runc for the test clusters (installed if absent; munged started)
	bash scripts/ensure-slurm.sh

lint: venv  ## ruff over the whole tree
	$(PY) -m ruff check .

test: venv system-deps docker slurm images lint  ## everything CI runs
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

test-cuda: venv system-deps docker  ## every CUDA image built, then checked on this machine's CPU (no GPU needed; not in CI)
	$(MAKE) images FLAVOUR=cuda
	GDBENCH_CUDA_IMAGES=1 GDBENCH_REQUIRE_DOCKER=1 $(PY) -m pytest -q -rs tests/test_cuda_images.py $(PYTEST_ARGS)

bench: venv  ## CPU solver benchmark in this environment: ms/iter, speedups, the floor and each framework's own gemv
	$(PY) -m solvers bench

bench-all: host-venv system-deps docker default-images  ## the full default sweep on every device this host has, then the report
	@# Failed or unavailable rows (exit 1, 3) are results too: the report shows them. Anything else stops here.
	@rc=0; $(HPY) -m orchestrator run --devices cpu,auto --out $(RUN_DIR) || rc=$$?; \
	case $$rc in 0|1|3) ;; *) exit $$rc ;; esac; \
	$(HPY) -m orchestrator report $(RUN_DIR) --out $(RUN_DIR)/report && \
	echo "results: $(RUN_DIR)   report: $(RUN_DIR)/report/report.html (sweep exit status $$rc)" >&2

bench-fleet: venv system-deps docker image-numpy  ## the same small sweep on 1, 2 and 3 engines of this host: wall time, shipping
	$(PY) scripts/bench_fleet.py

bench-cluster: venv system-deps docker slurm image-numpy image-numba  ## the same small sweep on the local engine and on 1 and 2 Slurm nodes: per-container cost of the Slurm path
	$(PY) scripts/bench_cluster.py

gpu-proof: venv  ## on an NVIDIA machine with the frameworks installed (no Docker): every GPU solver vs NumPy loop, one table
	$(PY) scripts/gpu_proof.py

doctor: host-venv docker  ## is this host ready: Docker, NVIDIA runtime, GPUs, images (each problem with its fix)
	$(HPY) -m orchestrator doctor

smoke: host-venv system-deps docker default-images  ## a small sweep over every framework on every device this host has
	$(HPY) -m orchestrator run --devices cpu,auto --dims 2,5 --n 500 --iters 50 --repeats 2 --out $(RUN_DIR)

default-images: host-venv base-image  ## the images the default sweep runs: each framework's default version, CPU (and CUDA where a GPU is)
	@$(MAKE) --no-print-directory images-default PY=$(HPY)
	@if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then $(MAKE) --no-print-directory images-default FLAVOUR=cuda PY=$(HPY); fi

wheel:  ## dist/gdbench-*.whl for pip install or pipx install anywhere: the CLI, the solvers and the project files
	rm -rf build && $(PYTHON) -m pip wheel -q --no-deps -w dist .

clean-containers: host-venv  ## remove containers a killed gdbench left behind
	$(HPY) -m orchestrator clean

clean:  ## remove the Python environment and local caches (not results, not images)
	rm -rf $(VENV) $(HOST_VENV) .cache .pytest_cache .ruff_cache

-include images/images.mk
