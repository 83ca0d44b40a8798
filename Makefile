# avatarme-edu: two commands on a fresh machine.
#   make demo   - builds the environment, then runs the main job on the bundled sample -> outputs/
#   make test   - builds the environment, then runs the whole test suite (this is what CI runs)
# Both create .venv themselves. TORCH pins the CPU build that lies on disk on our teaching machines;
# on a GPU machine use e.g. `make demo TORCH=torch` to take your platform's build.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test env browser clean notebooks

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/avatarme-edu demo --out outputs

browser:
	bash scripts/install_browser.sh

test: $(STAMP) browser
	$(PY) -m pytest -q

notebooks: $(STAMP)
	$(PY) -m pytest -q tests/test_notebooks.py

clean:
	rm -rf outputs .pytest_cache
