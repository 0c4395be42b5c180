"""spark-submit entry point for batch scoring.

    spark-submit jobs/score.py [--as-of INSTANT] [--lake PATH] [--customers IDS]

Same code and flags as `lakecdp score` (the lakecdp_score DAG runs it when LAKECDP_SPARK_SUBMIT is set);
settings come from conf/ and LAKECDP__* env vars.
"""

import sys

from lakecdp.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
