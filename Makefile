# The two commands: `make demo` runs a 30 s jam, `make test` runs the tests. Both set up a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
JAM_SECONDS ?= 30

.PHONY: setup demo test bench clean

setup:
	@./scripts/setup.sh

demo: setup
	$(PY) -m neurojam.cli demo --seconds $(JAM_SECONDS)

test:
	@NEUROJAM_WITH_CHROMIUM=1 ./scripts/setup.sh  # the stage's tests drive a real headless Chromium
	$(PY) -m pytest -q -n 2 --dist loadfile  # two workers, each test file whole on one (its fixtures built once)

bench: setup
	$(PY) bench/wire.py
	$(PY) bench/rig.py
	$(PY) bench/brain.py
	$(PY) bench/sessions.py
	$(PY) bench/analysis.py
	$(PY) bench/experiments.py
	$(PY) bench/trust.py
	$(PY) bench/sync.py
	$(PY) bench/loop.py
	$(PY) bench/stage.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
