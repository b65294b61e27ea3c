# audience: `make demo` and `make test` are the two commands a fresh clone needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PRESET ?= small
DATA := data/synthetic-$(PRESET)
DATA_STAMP := $(DATA)/_synthetic_truth/full/generator.json
ARGS ?=

.PHONY: install data demo test lint format docs bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

data: $(DATA_STAMP)

$(DATA_STAMP): | $(STAMP)
	$(PY) scripts/01_synthetic_data.py --preset $(PRESET) --data-dir $(DATA) --overwrite

# validate mode scores every method on the validation week; submit mode refits on train+validation and
# writes submissions/submission.parquet for the test week's new clips. Every stage reports its progress
# (a bar on a terminal, a line per step or per 10 s in a log); only 07_evaluate is quiet, because its
# table is printed once at the end.
demo: $(STAMP) $(DATA_STAMP)
	@start=$$(date +%s); \
	for mode in validate submit; do \
	  for s in 02_build_profiles 03_generate_candidates 04_blend 05_rerank 06_assign 07_evaluate; do \
	    quiet=$$( [ $$s = 07_evaluate ] && echo --quiet ); \
	    echo "== $$mode: $$s"; $(PY) scripts/$$s.py --data-dir $(DATA) --mode $$mode $$quiet $(ARGS) || exit 1; \
	  done; \
	done; \
	$(PY) scripts/08_make_submission.py --data-dir $(DATA) --mode submit --quiet $(ARGS) || exit 1; \
	echo; echo "validation results (artifacts/synthetic-$(PRESET)-validate/results.md):"; \
	cat artifacts/synthetic-$(PRESET)-validate/results.md; \
	echo; echo "wrote submissions/submission.parquet; demo pipeline took $$(( $$(date +%s) - start )) s"

test: $(STAMP)
	$(PY) -m ruff check src tests scripts benchmarks reports
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check src tests scripts benchmarks reports
	$(PY) -m ruff format --check src tests scripts benchmarks reports

# Rewrites the generated blocks of README.md and docs/figures.md (figures and tables) from the committed result files.
docs: $(STAMP)
	$(PY) scripts/docs.py

format: $(STAMP)
	$(PY) -m ruff format src tests scripts benchmarks reports
	$(PY) -m ruff check --fix src tests scripts benchmarks reports

# The benchmark suite: every clip -> users generator and user -> clips CF model at each preset, their peers
# (implicit, voyager, scikit-learn, np.linalg.inv, the notebook loop) and the metric timing, in one report:
# benchmarks/results.md + benchmarks/results/*.png. A preset's data is generated first when missing (medium:
# ~100M interactions, ~25 min). Quick run: `make bench BENCH_PRESETS=small`. BENCH_TIMEOUT caps each generator
# or model process (seconds); one that runs out is reported as such. BENCH_RANKER_TIMEOUT caps each preset's
# ranker pipeline (MixiGen, quota, reranker with their holdout runs; medium ~30 min).
BENCH_PRESETS ?= tiny small medium
BENCH_TIMEOUT ?= 600
BENCH_RANKER_TIMEOUT ?= 3600
bench: $(STAMP)
	$(PY) benchmarks/report.py --presets "$(BENCH_PRESETS)" --timeout $(BENCH_TIMEOUT) \
	  --ranker-timeout $(BENCH_RANKER_TIMEOUT)

clean:
	rm -rf artifacts $(VENV) .pytest_cache
