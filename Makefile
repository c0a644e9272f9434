# make run: serve the shared record on the embedded store.  make test: the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := pyproject.toml $(shell find fhir_gateway auth mappings profiles -type f \
	-not -path '*/__pycache__/*' 2>/dev/null)
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint bench spec-data profiles clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# A real (non-editable) install, so tests run what `pip install .` gives a user.
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet ".[test]"
	touch $@

DEMO_PEOPLE ?= 200

# First start: load a synthetic partnership (all five partners' feeds) into the store.
# The marker is written only once the load finished: a first start interrupted part way
# loads again next time (loading again changes nothing already stored).
run: $(VENV)/.installed
	@if [ -n "$$FHIR_GATEWAY_STORE" ]; then \
		echo "FHIR_GATEWAY_STORE is set: serving that store as it is (no demo partnership loaded)"; \
	elif [ ! -f var/.demo-loaded ]; then \
		echo "first start: loading a synthetic partnership of $(DEMO_PEOPLE) people"; \
		$(BIN)/fhir-gateway demo --people $(DEMO_PEOPLE) || exit 1; \
		touch var/.demo-loaded; \
	fi
	$(BIN)/fhir-gateway serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/ruff check fhir_gateway auth mappings profiles tests bench scripts
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check fhir_gateway auth mappings profiles tests bench scripts

bench: $(VENV)/.installed
	$(BIN)/python bench/crud.py

# Re-extract the committed R4 data files from hl7.fhir.r4.examples@4.0.1 (needs npm).
spec-data: $(BIN)/python
	$(BIN)/python scripts/extract_spec_data.py

# Regenerate profiles/generated/ from the FHIR Shorthand in profiles/input/fsh/ (SUSHI,
# the FHIR R4 package and ../shared/ukcore; needs node and npm, and only the standard
# library of Python, run from this tree). Commit the result.
profiles: $(BIN)/python
	$(BIN)/python -m fhir_gateway.validation.build_profiles

clean:
	rm -rf $(VENV) build *.egg-info
