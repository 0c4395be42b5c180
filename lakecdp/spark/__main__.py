"""`python -m lakecdp.spark`: resolve the configured session's Maven packages once (make setup, make jars)."""

from __future__ import annotations

from lakecdp.config import load_settings
from lakecdp.spark.jars import write_spark_defaults
from lakecdp.spark.session import session_for


def main() -> int:
    """Resolve the configured session's packages into the Ivy cache; name them in the venv's Spark defaults."""
    settings = load_settings()
    # S3 and Kafka too: CI's tests run an s3:// lake and a Kafka source, and a lake moved to S3 or
    # a stream moved to Kafka later needs no new download.
    spark = session_for(settings, s3=True, kafka=True)
    used = spark.sparkContext.getConf()
    jars = [j for j in used.get("spark.jars", "").split(",") if j]
    conf = {key: used.get(key, "") for key in ("spark.jars.packages", "spark.jars.excludes") if used.contains(key)}
    spark.stop()
    print(f"Spark packages resolved into the Ivy cache: {conf.get('spark.jars.packages', 'none')} ({len(jars)} jars)")
    if conf:
        print(
            f"named in {write_spark_defaults(conf)} for spark-submit; elsewhere pass: "
            + " ".join(f"--conf {k}={v}" for k, v in conf.items())
        )
    return 0


raise SystemExit(main())
