"""Run independent Spark steps at once, from one driver."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from pyspark.util import inheritable_thread_target


def run_together(*steps: Callable[[], Any]) -> list[Any]:
    """Run `steps` in threads of their own; return their results in order.

    Most of a small micro-batch is latency, not CPU: job scheduling, planning, the Arrow
    transfer to the driver and the delta-rs commit. Steps that write different tables overlap
    those waits. Each thread inherits the caller's Spark local properties (job group, so
    stopping a stream cancels their jobs too). Every step finishes before the first error is
    raised: a failed batch never leaves a step running into its replay.
    """
    if len(steps) == 1:
        return [steps[0]()]
    with ThreadPoolExecutor(max_workers=len(steps), thread_name_prefix="lakecdp-step") as pool:
        futures = [pool.submit(inheritable_thread_target(step)) for step in steps]
        wait(futures)
    return [future.result() for future in futures]
