"""Run independent Spark steps at once, from one driver."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from pyspark.sql import SparkSession
from pyspark.util import inheritable_thread_target


def run_together(spark: SparkSession, *steps: Callable[[], Any]) -> list[Any]:
    """Run `steps` on `spark` in threads of their own; return their results in order.

    One step alone leaves cores idle between its jobs (planning, the Arrow transfer to the
    driver, the delta-rs commit); steps that write different tables fill those gaps (a
    500-event stream micro-batch: 6.6 s one after another, 5.5 s together). Each thread
    inherits the caller's Spark local properties (job group, so stopping a stream cancels
    their jobs too). Every step finishes before the first error is raised: a failed batch
    never leaves a step running into its replay.
    """
    if len(steps) == 1:
        return [steps[0]()]
    # Given the session, the threads inherit its tags too (the stream's foreachBatch callback
    # thread has no active session to find).
    inherit = inheritable_thread_target(spark)
    with ThreadPoolExecutor(max_workers=len(steps), thread_name_prefix="lakecdp-step") as pool:
        futures = [pool.submit(inherit(step)) for step in steps]
        wait(futures)
    return [future.result() for future in futures]
