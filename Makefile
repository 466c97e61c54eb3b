# Developer targets. `make fuzz` runs every fuzz target for FUZZ_SECONDS each (atheris when
# installed: pip install -e '.[fuzz]'; hypothesis otherwise). A crash is saved to fuzz/crashes/.
PYTHON ?= python
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := manifest reference layer

.PHONY: fuzz $(addprefix fuzz-,$(FUZZ_TARGETS)) lint test

fuzz: $(addprefix fuzz-,$(FUZZ_TARGETS))

$(addprefix fuzz-,$(FUZZ_TARGETS)): fuzz-%:
	$(PYTHON) -m fuzz.run $* --seconds $(FUZZ_SECONDS)

lint:
	ruff check . && ruff format --check . && mypy

test:
	$(PYTHON) -m pytest
