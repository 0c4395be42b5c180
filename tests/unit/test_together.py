"""run_together: independent Spark steps in threads, results in order, errors after all finish."""

import threading
import time

import pytest

from lakecdp.spark.together import run_together


def test_results_come_back_in_the_order_of_the_steps(spark):
    results = run_together(spark, lambda: spark.range(5).count(), lambda: "b", lambda: spark.range(7).count())
    assert results == [5, "b", 7]


@pytest.mark.filterwarnings("error")  # PySpark warns when threads cannot inherit the session's tags
def test_steps_inherit_the_callers_job_group(spark):
    sc = spark.sparkContext
    sc.setJobGroup("lakecdp-test-group", "run_together inherits local properties")
    try:
        groups = run_together(spark, *[lambda: sc.getLocalProperty("spark.jobGroup.id")] * 2)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert groups == ["lakecdp-test-group", "lakecdp-test-group"]


def test_an_error_is_raised_only_after_every_step_has_finished(spark):
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        finished.set()

    def failing() -> None:
        raise ValueError("step failed")

    with pytest.raises(ValueError, match="step failed"):
        run_together(spark, failing, slow)
    assert finished.is_set()
