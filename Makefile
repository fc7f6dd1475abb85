# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv from the pinned requirements on first use; nothing else is needed on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): requirements.txt setup.py CMakeLists.txt $(wildcard plugin/*)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m actionmd.demo $(if $(TRAIN),--train)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build python/*.egg-info python/actionmd/lammps_plugin/*.so
