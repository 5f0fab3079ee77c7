# Image targets, included by the root Makefile. Expects PY: the project venv's python (orchestrator.images.compose
# and pip are used from it). See images/README.md.
#
#   make images [FLAVOUR=cpu|cuda]   every declared image of that flavour: each framework's default service
#                                    (cuda: numba, jax, tensorflow, torch, cupy), then every version added with
#                                    `gdbench images add` (scripts/build_image.py --added lists them)
#   make images-default [FLAVOUR=…]  each framework's default image only (what make bench-all runs)
#   make image-<framework>           one image, e.g. make image-torch FLAVOUR=cuda
#   make base-image                  the local Debian bookworm + Python 3.11 base (cached)
#   make wheelhouse                  download the locked wheels (and torch's .debs) for the flavour
#   make locks                       re-resolve every lock from its requirements .in file (network)
#   make image-info                  each built image's size and pinned versions (from its labels)
#   NO_CACHE=1                       rebuild every layer (how a cold build is timed)

PY ?= $(abspath .venv)/bin/python
FLAVOUR ?= cpu
LOCAL_BASE_IMAGE := gdbench/base:bookworm-py3.11
# Where a registry answers: make images BASE_IMAGE=python:3.11-slim-bookworm
BASE_IMAGE ?= $(LOCAL_BASE_IMAGE)
UV_VERSION ?= 0.13.9

IMAGE_FRAMEWORKS_cpu := numpy numba jax tensorflow torch
IMAGE_FRAMEWORKS_cuda := numba jax tensorflow torch cupy
# Every framework with an image of any flavour (cupy has no CPU flavour).
IMAGE_FRAMEWORKS_all := $(sort $(IMAGE_FRAMEWORKS_cpu) $(IMAGE_FRAMEWORKS_cuda))
IMAGE_FRAMEWORKS := $(IMAGE_FRAMEWORKS_$(FLAVOUR))
ifeq ($(IMAGE_FRAMEWORKS),)
$(error FLAVOUR must be cpu or cuda, not "$(FLAVOUR)")
endif
service = $(if $(filter cuda,$(FLAVOUR)),$(1)-gpu,$(1))
export DOCKER_BUILDKIT := 0

.PHONY: images images-default base-image wheelhouse gdbench-wheel lock-tool locks image-info $(addprefix image-,$(IMAGE_FRAMEWORKS_all)) \
	$(addprefix wheelhouse-,$(IMAGE_FRAMEWORKS_all))

images-default: $(addprefix image-,$(IMAGE_FRAMEWORKS))  ## each framework's default image of FLAVOUR: what the default sweep runs

images: $(addprefix image-,$(IMAGE_FRAMEWORKS))  ## build every declared image of FLAVOUR (cpu default; FLAVOUR=cuda)
	@for svc in $$($(PY) scripts/build_image.py --added $(FLAVOUR)); do \
	  $(PY) scripts/build_image.py $$svc --fetch --base $(BASE_IMAGE) $(if $(NO_CACHE),--no-cache) || exit 1; done

base-image:  ## the local bookworm + Python 3.11 base image (debootstrap + docker import, once)
ifeq ($(BASE_IMAGE),$(LOCAL_BASE_IMAGE))
	@bash scripts/build-base-image.sh $(BASE_IMAGE)
else
	@docker image inspect $(BASE_IMAGE) >/dev/null 2>&1 || docker pull $(BASE_IMAGE)
endif

wheelhouse: $(addprefix wheelhouse-,$(IMAGE_FRAMEWORKS)) gdbench-wheel  ## locked wheels (+ torch .debs) for FLAVOUR

gdbench-wheel:
	@PYTHON=$(PY) bash scripts/build-wheel.sh .cache/dist >/dev/null

# One stamp per wheelhouse, beside it (inside, it would change the build context): refetched when its lock
# changes (wheels already there are kept and re-verified).
define wheelhouse_rules
.cache/wheelhouse/$(1)-$(2).stamp: images/$(1)/requirements-$(2).txt images/installer.txt scripts/fetch_wheels.py
	$$(PY) scripts/fetch_wheels.py images/$(1)/requirements-$(2).txt .cache/wheelhouse/$(1)-$(2)
	@touch $$@
endef
$(foreach fw,$(IMAGE_FRAMEWORKS_cpu),$(eval $(call wheelhouse_rules,$(fw),cpu)))
$(foreach fw,$(IMAGE_FRAMEWORKS_cuda),$(eval $(call wheelhouse_rules,$(fw),cuda)))

# Explicit rules (pattern rules would not apply to these .PHONY targets).
define image_rules
wheelhouse-$(1): .cache/wheelhouse/$(1)-$$(FLAVOUR).stamp $(if $(wildcard images/$(1)/apt-packages.txt),base-image)
	@if [ -f images/$(1)/apt-packages.txt ]; then \
	  bash scripts/fetch-debs.sh $$(BASE_IMAGE) images/$(1)/apt-packages.txt .cache/debhouse/$(1); \
	else mkdir -p .cache/debhouse/$(1); fi

image-$(1): base-image $$(if $$(filter $(1),$$(IMAGE_FRAMEWORKS)),wheelhouse-$(1),no-flavour-$(1)) gdbench-wheel
	@$$(PY) scripts/build_image.py $$(call service,$(1)) --base $$(BASE_IMAGE) $$(if $$(NO_CACHE),--no-cache)
endef
$(foreach fw,$(IMAGE_FRAMEWORKS_all),$(eval $(call image_rules,$(fw))))

no-flavour-%:
	@echo "error: $* has no $(FLAVOUR) flavour (images of FLAVOUR=$(FLAVOUR): $(IMAGE_FRAMEWORKS))" >&2; exit 2

lock-tool:  ## the pinned uv that resolves every lock (in .cache/tools, from PyPI itself)
	@test -x .cache/tools/bin/uv || { python3 -m venv .cache/tools && \
	  PIP_CONFIG_FILE=/dev/null .cache/tools/bin/pip install -q uv==$(UV_VERSION); }

locks: lock-tool  ## re-resolve every lock (uv pip compile --generate-hashes; needs PyPI), then review the diff
	@for in in images/installer.in images/*/requirements-*.in; do \
	  UV=.cache/tools/bin/uv bash scripts/lock-image.sh $$in || exit 1; done

image-info:  ## size and pinned versions (from labels) of every built gdbench image
	@printf '%-32s %8s  %-12s %-5s %-7s %s\n' IMAGE SIZE FRAMEWORK CUDA PYTHON REVISION
	@for ref in $$(docker image ls --filter label=io.gdbench.framework --filter dangling=false --format '{{.Repository}}:{{.Tag}}' | sort); do \
	  docker image inspect -f '{{.Size}}|{{index .Config.Labels "io.gdbench.framework.version"}}|{{index .Config.Labels "io.gdbench.cuda.version"}}|{{index .Config.Labels "io.gdbench.python.version"}}|{{index .Config.Labels "org.opencontainers.image.revision"}}' $$ref \
	  | awk -F'|' -v ref=$$ref '{printf "%-32s %5.0f MB  %-12s %-5s %-7s %.12s\n", ref, $$1/1e6, $$2, ($$3==""?"-":$$3), $$4, $$5}'; \
	done
