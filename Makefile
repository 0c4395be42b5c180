# Two commands matter on a fresh machine: `make demo` and `make test`.
# Both create .venv from pyproject.toml + constraints.txt when it is missing or stale.
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
PY     := $(VENV)/bin/python
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(abspath $(PY))
export GX_ANALYTICS_ENABLED ?= false

.PHONY: setup jars caniemail demo test test-full test-fast lint report-screenshot clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v java >/dev/null || { echo "Java 17 is required: apt-get install -y openjdk-17-jre-headless"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m lakecdp.spark
	@touch $(STAMP)

# Delta's Spark jars (and any spark.jars.packages in conf) from Maven Central into Ivy's cache,
# once: later Spark starts read the cache and need no network.
jars:
	$(PY) -m lakecdp.spark

# caniemail's email-client support data for `lakecdp content audit`: the pinned npm package (version and
# checksums in lakecdp/content/caniemail.py) fetched once with `npm pack` into ~/.cache/lakecdp; a no-op when there.
caniemail: setup
	$(PY) -m lakecdp.content.caniemail

demo: setup
	$(VENV)/bin/lakecdp demo

# `make test` runs test files in this many worker processes, each with its own SparkSession (3 GB heap):
# two keep both cores of the CI machine busy (fresh-clone CI: 1,250-1,305 s against 1,530 s serially, 2026-12-07).
TEST_WORKERS ?= 2

# The default suite (CI): unit tests and one real path per capability. `make test-full` adds the
# tests marked `extended`: kill -9 mid-stream (Kafka source) and mid-export, the Spark standalone
# cluster, the S3 lake and the Kafka source, each a second path to a result a default test checks.
test: setup caniemail
	$(PY) -m pytest -m "not extended" -n $(TEST_WORKERS) --dist loadfile

test-full: setup caniemail
	$(PY) -m pytest

test-fast: setup caniemail
	$(PY) -m pytest -m "not integration"

# ruff (lint and format, whole repo), mypy (lakecdp/ and models/) and bandit (the shipped code's security
# scan), as configured in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit -q -c pyproject.toml -r lakecdp models dags jobs

# docs/report.png: a full-page screenshot of `lakecdp report` on LAKE (default ./lake, e.g. after `make demo`),
# taken by headless Chromium (apt-get install -y chromium chromium-driver).
LAKE ?= ./lake
REPORT_HTML ?= $(or $(TMPDIR),/tmp)/lakecdp-report.html
report-screenshot: setup
	@mkdir -p docs
	$(VENV)/bin/lakecdp report --lake $(LAKE) --out $(REPORT_HTML)
	$(PY) -c "from tests.browser import screenshot; print('wrote', screenshot('$(REPORT_HTML)', 'docs/report.png'))"

clean:
	rm -rf lake landing demo-out spark-warehouse .pytest_cache
