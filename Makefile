# Two commands do everything on a fresh machine:
#   make train   set up, get Fashion-MNIST, train the default LeNet and print its results
#   make test    set up, get Fashion-MNIST, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
# A machine with an NVIDIA driver (nvidia-smi) gets pip's default build, which is CUDA's on Linux;
# any other the pinned CPU build at hand. `make TORCH=... ` chooses by hand.
TORCH  ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
ARGS   ?=
BIN    := $(VENV)/bin

.PHONY: train notebook test fault-test cluster-test install data browser gnu-time tutorial-venv bench bench-serve fuzz-table clean

train: install data
	$(BIN)/lenet train $(ARGS)

# The tutorial notebook in JupyterLab: the [notebook] extra goes into .venv on first use (make train leaves
# it out: JupyterLab is large). ARGS go to jupyter lab, e.g. ARGS="--no-browser --port 8888".
notebook: install data $(VENV)/.notebook
	$(BIN)/jupyter lab notebooks/lenet_tutorial.ipynb $(ARGS)

$(VENV)/.notebook: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[notebook]"
	touch $@

# One pytest worker per core, a test file to a worker (so the fuzzing file counts RELIABILITY.md's table
# in one process), each test on one thread: on 2 cores the suite took 325 s so, against 598 s on one
# worker (tests train tiny nets, which more threads only slow).
test: install data browser gnu-time
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto --dist loadfile -m "not cluster and not faults" $(ARGS)

# The sweep under faults on a local Ray (Ctrl-C, a killed driver, a node lost, ASHA, the token): about five
# minutes of Ray start-ups on 2 cores, which would take `make test` past ten minutes; CI runs it too.
fault-test: install data
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto --dist loadfile -m faults $(ARGS)

# A sweep on two machines that share no disk (two namespaces, a veth pair, an S3 server; as root), one of
# them lost mid-trial: minutes long, so not in `make test`, which keeps a short two-node variant.
cluster-test: install data
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/test_cluster.py -m cluster -v $(ARGS)

# Training speed and time to accuracy against the tutorial's own code (torchvision, in .venv-tutorial where
# it installs): make bench ARGS="--write BENCHMARKS.md" writes their tables there
bench: install data tutorial-venv
	$(BIN)/python -m benchmarks.train_speed $(ARGS)

tutorial-venv:
	@PYTHON=$(PYTHON) sh scripts/get-tutorial-venv.sh

# Serving load test: make bench-serve RUN=runs/NAME (writes BENCHMARKS.md's Serving section)
bench-serve: install data
	$(BIN)/python -m benchmarks.serve_load $(RUN) --write BENCHMARKS.md $(ARGS)

# The fuzzing run, writing its counts into RELIABILITY.md's table
fuzz-table: install data
	$(BIN)/python -m pytest tests/test_fuzz.py -q --write-fuzz-table

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

data:
	@sh scripts/get-data.sh

# The HTML report's test opens it in Debian's chromium, driven by Playwright.
browser:
	@sh scripts/get-browser.sh

gnu-time:
	@sh scripts/get-time.sh

clean:
	rm -rf $(VENV) .venv-tutorial build src/*.egg-info .pytest_cache
