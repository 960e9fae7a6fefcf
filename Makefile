# Setup and the two everyday commands. `make demo` and `make test` create the virtual
# environment on first use.
PYTHON ?= python3
VENV := .venv
SHARED_DATA ?= ../shared/data

.PHONY: venv demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/loraplex demo \
		--train $(SHARED_DATA)/sst2/train.tsv --eval $(SHARED_DATA)/sst2/dev.tsv \
		--task sst2-sentiment

# pytest exits 5 when it collected nothing; that is a failure too.
test: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status
