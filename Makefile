# avatarme-edu: two commands on a fresh machine.
#   make demo   - builds the environment, then reconstructs the bundled astronaut photo -> outputs/astronaut/
#                 (maps, meshes, renders, glTF + HTML viewer, report.json); `make demo-lightstage`: the
#                 virtual light stage's sample subject -> outputs/lightstage_sample/
#   make test   - builds the environment, then runs the whole test suite (this is what CI runs)
# While editing: `make test-fast` (everything not marked slow, under a minute), `make strip` (remove
# notebook outputs before committing), `make baselines` (store the notebooks' key numbers anew, on
# purpose, after a change that should move them; commit tests/baselines/notebooks.json).
# Both create .venv themselves. TORCH pins the CPU build that lies on disk on our teaching machines;
# on a GPU machine use e.g. `make demo TORCH=torch` to take your platform's build.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
# the suite runs on this many processes (pytest-xdist), one thread each: 2 fits a 2-core laptop; the
# long modules go first (tests/conftest.py) and an idle worker takes queued tests from the busy one
TEST_WORKERS ?= 2
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-lightstage test test-fast env browser clean notebooks strip baselines

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

env: $(STAMP)

# one torch thread: on a busy 2-core laptop two threads spin against other work and run 5x slower
# (measured: 382 s vs 58 s at load 4.5); on a quiet machine try `make demo DEMO_THREADS=2`
DEMO_THREADS ?= 1

demo: $(STAMP)
	OMP_NUM_THREADS=$(DEMO_THREADS) $(VENV)/bin/avatarme-edu reconstruct --sample astronaut --profile cpu --out outputs/astronaut --overwrite

demo-lightstage: $(STAMP)
	$(VENV)/bin/avatarme-edu demo --out outputs/lightstage_sample

browser:
	bash scripts/install_browser.sh

test: $(STAMP) browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS)

notebooks: $(STAMP)
	$(PY) -m pytest -q tests/test_notebooks.py

strip: $(STAMP)
	$(PY) -m nbstripout --keep-id notebooks/*.ipynb tests/browser/*.ipynb

baselines: $(STAMP)
	$(PY) -m pytest -q tests/test_notebooks.py -k runs_and_keeps --update-baselines
	git diff --stat tests/baselines/notebooks.json

clean:
	rm -rf outputs .pytest_cache
