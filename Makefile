# Two commands matter on a fresh machine: `make demo` and `make test`.
# Both create .venv from pyproject.toml + constraints.txt when it is missing or stale.
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
PY     := $(VENV)/bin/python
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(abspath $(PY))
export GX_ANALYTICS_ENABLED ?= false

.PHONY: setup jars demo test test-fast clean

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

demo: setup
	$(VENV)/bin/lakecdp demo

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not integration"

clean:
	rm -rf lake landing demo-out spark-warehouse .pytest_cache
