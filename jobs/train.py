"""spark-submit entry point for model training.

    spark-submit jobs/train.py [--as-of INSTANT] [--lake PATH] [--truth FILE]

Same code and flags as `lakecdp train` (the lakecdp_retrain DAG runs it when LAKECDP_SPARK_SUBMIT is set);
settings come from conf/ and LAKECDP__* env vars.
"""

import sys

from lakecdp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
