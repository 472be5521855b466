# Two commands: `make demo` and `make test`. Each creates .venv when missing, installs the pinned
# requirements and the project (editable), and skips the install while the pins are unchanged.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(DEPS_HASH)

.PHONY: install test demo lint bench clean

install: $(STAMP)

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned requirements into $(VENV) (first time: a few minutes)"
	# torch, torchvision and open_clip_torch come in this ONE call: installed apart, pip would
	# replace the pinned torch.
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@echo $(DEPS_HASH) > $@

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(VENV)/bin/kgclip demo

bench: install
	for b in benchmarks/*_bench.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs/demo
