# kdlab: `make run` runs the main job on the bundled data, `make test` runs every test and notebook.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test solved lab course clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $@

run: install
	$(PY) -m kdlab pipeline --seeds 0-4 --jobs 2

SOLVED := runs/solved

solved: install  ## the chapters with every exercise cell replaced by its solution (solutions/), into runs/solved/
	$(PY) -m kdlab.exercises.solve notebooks solutions $(SOLVED)

test: solved
	TQDM_DISABLE=1 $(PY) -m pytest tests $(SOLVED) --nbval-lax --nbval-current-env -p no:cacheprovider

course: solved  ## every solved chapter through papermill into runs/course/, e.g. make course PARAMS="-p seed 1"
	@mkdir -p runs/course; status=0; \
	for notebook in $(SOLVED)/*.ipynb; do \
	  name=$$(basename $$notebook .ipynb); start=$$(date +%s); \
	  if TQDM_DISABLE=1 $(VENV)/bin/papermill $$notebook runs/course/$$name.ipynb $(PARAMS) > runs/course/$$name.log 2>&1; \
	  then echo "$$name: ok in $$(( $$(date +%s) - start )) s -> runs/course/$$name.ipynb"; \
	  else echo "$$name: FAILED after $$(( $$(date +%s) - start )) s, see runs/course/$$name.log"; status=1; fi; \
	done; exit $$status

lab: install
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs
