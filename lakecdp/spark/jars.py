"""The JVM packages Spark fetches from Maven Central, resolved once into Ivy's cache.

`python -m lakecdp.spark` (run by `make setup` and CI) resolves them; every later
session start finds them in the cache (~/.ivy2.5.2 unless spark.jars.ivy says otherwise) and
needs no network.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pyspark

# Scala build of every Spark 4 jar (pyspark 4 ships Scala 2.13 only).
SCALA = "2.13"

# Transitive dependencies of Delta's jars (through delta-kernel-defaults) that Spark already
# ships, in other versions: fetched as well, the older copies (jackson 2.13 against Spark's
# 2.21, parquet 1.16 against 1.17, ...) would sit beside Spark's own on the classpath. Ivy
# matches these with globs (Spark builds its exclusion rules with Ivy's glob matcher).
SPARK_PROVIDED = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:*",
    "com.fasterxml.jackson.core:*",
    "com.fasterxml.jackson.datatype:*",
    "org.apache.logging.log4j:*",
    "org.slf4j:*",
    "org.xerial.snappy:*",
    "com.github.luben:*",
    "org.roaringbitmap:*",
    "io.airlift:*",
    "commons-logging:*",
    # and through the AWS SDK (S3 lakes): Spark ships netty 4.2, httpclient 4.5.14, commons-codec 1.22
    "io.netty:*",
    "org.apache.httpcomponents:*",
    "commons-codec:*",
    "com.google.code.findbugs:*",
    # and through Kafka's client (stream.source: kafka): Spark ships lz4-java 1.11 (at.yawk.lz4's build)
    "at.yawk.lz4:*",
)


# S3 lakes (lake.root: s3://...): Hadoop's S3A connector, in the Hadoop version pyspark ships, and
# the AWS SDK v2 modules S3A calls. hadoop-aws depends on AWS's `bundle` jar (686 MB: every AWS
# service, shaded); S3A needs s3, its transfer manager and STS (assumed roles), a few MB with their
# dependencies. The SDK version is the one Hadoop 3.5.0 builds against (hadoop-project's
# aws-java-sdk-v2.version).
AWS_SDK_VERSION = "2.35.4"
AWS_SDK_MODULES = ("s3", "s3-transfer-manager", "sts")
AWS_SDK_BUNDLE = "software.amazon.awssdk:bundle"


def hadoop_version() -> str:
    """The Hadoop client version in pyspark's jars (hadoop-aws must match it)."""
    jars = Path(pyspark.__file__).parent / "jars"
    found = sorted(j.name for j in jars.glob("hadoop-client-api-*.jar"))
    if not found:
        raise RuntimeError(f"no hadoop-client-api jar in {jars}: cannot pick hadoop-aws's version")
    return found[-1].removeprefix("hadoop-client-api-").removesuffix(".jar")


def s3_packages() -> list[str]:
    """S3A (hadoop-aws) and the AWS SDK modules it uses, for s3:// lakes and checkpoints."""
    return [f"org.apache.hadoop:hadoop-aws:{hadoop_version()}", *(f"software.amazon.awssdk:{m}:{AWS_SDK_VERSION}" for m in AWS_SDK_MODULES)]


def kafka_packages() -> list[str]:
    """Spark's Kafka source in pyspark's own version (stream.source: kafka); it brings kafka-clients."""
    return [f"org.apache.spark:spark-sql-kafka-0-10_{SCALA}:{pyspark.__version__}"]


# Lines of spark-defaults.conf that write_spark_defaults owns (rewritten on every run).
_MANAGED = ("spark.jars.packages ", "spark.jars.excludes ")
_MANAGED_MARK = "# the next lines are written by python -m lakecdp.spark (make jars)"


def delta_package() -> str:
    """Delta's Spark jar for the installed delta-spark and pyspark (as delta's configure_spark_with_delta_pip names it)."""
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_{SCALA}:{version('delta-spark')}"


def package_conf(packages: list[str], conf: dict[str, str]) -> dict[str, str]:
    """spark.jars.packages/excludes for `packages`, keeping any the user's spark.conf already names."""
    named = [p for p in conf.get("spark.jars.packages", "").split(",") if p]
    excludes = [e for e in conf.get("spark.jars.excludes", "").split(",") if e]
    return {
        "spark.jars.packages": ",".join(dict.fromkeys(named + packages)),
        "spark.jars.excludes": ",".join(dict.fromkeys(excludes + list(SPARK_PROVIDED) + [AWS_SDK_BUNDLE])),
    }


class JarResolutionError(RuntimeError):
    """Spark's JVM did not start: the Maven packages it needs could not be resolved."""

    def __init__(self, packages: str, ivy: str | None) -> None:
        cache = ivy or "~/.ivy2.5.2"
        super().__init__(
            f"Spark could not start: it needs the Maven packages {packages}, which are neither in the Ivy "
            f"cache ({cache}) nor downloadable (no route to Maven Central, or a version Maven Central does not "
            "serve; Ivy's report is printed above). Fix: on a machine that reaches Maven Central run "
            "`make jars` (or `.venv/bin/python -m lakecdp.spark`) once, or copy its Ivy cache here; "
            "or set lake.engine: delta-rs, which needs no jars."
        )


def write_spark_defaults(conf: dict[str, str], path: Path | None = None) -> Path:
    """Name the packages in this installation's conf/spark-defaults.conf (lakecdp's lines only, others kept).

    `spark-submit jobs/<job>.py` starts the JVM before lakecdp builds its session, so packages set
    by the session builder come too late there; spark-submit reads this file first.
    """
    path = path or Path(pyspark.__file__).parent / "conf" / "spark-defaults.conf"
    old = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in old if not line.startswith(_MANAGED) and line != _MANAGED_MARK]
    lines = [*kept, _MANAGED_MARK, *(f"{key} {value}" for key, value in conf.items())]
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
