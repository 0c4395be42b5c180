"""Delta's jars come from Ivy's cache; where they can be neither found nor fetched, Spark's start says so."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lakecdp.spark.jars import delta_package

pytestmark = pytest.mark.integration

# Ivy settings with one resolver, over an empty folder: the same as a machine with an empty
# cache and no route to Maven Central.
OFFLINE_IVY = """<ivysettings>
  <settings defaultResolver="offline"/>
  <resolvers>
    <filesystem name="offline">
      <ivy pattern="{repo}/[organisation]/[module]/[revision]/ivy.xml"/>
      <artifact pattern="{repo}/[organisation]/[module]/[revision]/[artifact].[ext]"/>
    </filesystem>
  </resolvers>
</ivysettings>
"""


def test_delta_package_matches_the_installed_python_packages():
    from importlib.metadata import version

    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    assert delta_package() == f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def test_session_has_delta_jars_and_extension(spark):
    from lakecdp.lake.delta_spark import delta_jars_available

    assert delta_jars_available(spark)
    assert "DeltaSparkSessionExtension" in spark.conf.get("spark.sql.extensions")


def test_first_start_offline_names_the_jars_and_the_fix(tmp_path):
    (tmp_path / "repo").mkdir()
    settings_file = tmp_path / "ivysettings.xml"
    settings_file.write_text(OFFLINE_IVY.format(repo=tmp_path / "repo"))
    script = textwrap.dedent(
        f"""
        from lakecdp.config.models import SparkSettings
        from lakecdp.spark import JarResolutionError, build_session

        conf = {{"spark.jars.ivy": {str(tmp_path / "ivy")!r}, "spark.jars.ivySettings": {str(settings_file)!r}}}
        try:
            build_session(SparkSettings(conf=conf), delta_spark=True)
        except JarResolutionError as exc:
            print("REFUSED:", exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    refused = [line for line in done.stdout.splitlines() if line.startswith("REFUSED:")]
    assert refused, done.stdout + done.stderr[-2000:]
    message = refused[0]
    assert delta_package() in message
    assert str(tmp_path / "ivy") in message
    assert "make jars" in message and "lake.engine: delta-rs" in message
    assert "Traceback" not in done.stderr


def test_spark_defaults_name_the_packages_once_and_keep_other_settings(tmp_path):
    from lakecdp.spark.jars import write_spark_defaults

    path = tmp_path / "spark-defaults.conf"
    path.write_text("spark.executor.memory 3g\nspark.jars.packages com.example:old:1\n")
    conf = {"spark.jars.packages": delta_package(), "spark.jars.excludes": "org.slf4j:*"}
    write_spark_defaults(conf, path)
    write_spark_defaults(conf, path)  # make setup runs on every stale venv: the lines are replaced, not added
    lines = path.read_text().splitlines()
    assert "spark.executor.memory 3g" in lines
    assert [line for line in lines if line.startswith("spark.jars.")] == [
        f"spark.jars.packages {delta_package()}",
        "spark.jars.excludes org.slf4j:*",
    ]
    assert sum(line.startswith("#") for line in lines) == 1
