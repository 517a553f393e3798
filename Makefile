# bcc — one-command entry points. `make demo` and `make test` work on a fresh clone.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo train eval localization real real-controls external test test-fast bench lint clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; torch comes from this machine's disk (pinned).
# quantus (Table 4's localisation metrics) goes in with --no-deps: it asks for opencv-python, a second
# distribution of the cv2 module that albumentations' opencv-python-headless already provides; the one
# other package it imports, scikit-image, is in pyproject.toml.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps quantus==0.6.0
	@touch $(STAMP)

demo: install
	$(BIN)/python -m bcc.demo $(ARGS)

train: install
	$(BIN)/python -m bcc.train $(ARGS)

eval: install
	$(BIN)/python -m bcc.evaluate $(ARGS)

# Table 4's run: one fold through the whole protocol at 192 px, then its report (outputs/localization/report).
localization: install
	$(BIN)/python -m bcc.train experiment=localization $(ARGS)
	$(BIN)/python -m bcc.evaluate experiment=localization eval.k=1

# The real-data run (docs/real-data.md): HAM10000, Derm7pt and PH2 in their official layouts under DATA,
# merged once into data/real (a timed step of bcc.real; an existing data/real/merged is reused), then consensus,
# folds, EfficientNet-Lite0 from ImageNet through stages 1-3 on every fold, the leave-one-source-out runs and the
# report (outputs/real/report). real-controls: the same folds from scratch and as a linear probe (docs/real-data.md).
REAL := data/real
real: install
	@test -n "$(DATA)" || test -f $(REAL)/merged/images.csv || \
		{ echo "usage: make real DATA=<folder holding HAM10000, Derm7pt and PH2 as downloaded>" >&2; exit 2; }
	$(BIN)/python -m bcc.real $(if $(DATA),--data "$(DATA)") $(ARGS)

# After make real: the control runs on the same folds and Table 5 on real pictures (outputs/real/controls/comparison.md).
real-controls: install
	@test -f $(REAL)/merged/images.csv || { echo "make real DATA=<folder> first: the controls use its merged set and folds" >&2; exit 2; }
	$(BIN)/python -m bcc.real --controls $(ARGS)

# Score a held-out set in the ISIC 2018 Task 3 test layout with every fold model of a run and their ensemble.
TEST_SET ?= data/isic2018_test
SOURCE ?= outputs/real
external: install
	@test -n "$(TEST)" || test -f $(TEST_SET)/images.csv || \
		{ echo "usage: make external TEST=<folder with ISIC2018_Task3_Test_Input/ and its GroundTruth.csv> [SOURCE=$(SOURCE)]" >&2; exit 2; }
	@if test -f $(TEST_SET)/images.csv; then echo "[bcc] reusing $(TEST_SET) (delete it to convert TEST afresh)"; \
		else $(BIN)/python -m bcc.data.ham10000 "$(TEST)" --layout isic2018_test --out $(TEST_SET); fi
	$(BIN)/python -m bcc.evaluate experiment=external external.source=$(SOURCE) data.root=$(TEST_SET) $(ARGS)

# The suite on TEST_WORKERS pytest-xdist workers (one torch thread each); the longest tests are stolen by an
# idle worker rather than queued behind another. TEST_WORKERS=0: one process, as before.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal) $(ARGS)

# Everything but the end-to-end tests marked slow (make test and CI run those too).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

bench: install $(VENV)/.bench
	$(BIN)/python -m benchmarks.run $(ARGS)

$(VENV)/.bench: pyproject.toml
	$(BIN)/pip install -q -e '.[dev,bench]'
	@touch $@

# ruff (rules: pyproject.toml) and the type checker on bcc/ ([tool.mypy])
lint: install
	$(BIN)/ruff check bcc tests benchmarks experiments
	$(BIN)/mypy

clean:
	rm -rf outputs .pytest_cache
