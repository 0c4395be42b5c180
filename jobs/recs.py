"""spark-submit entry point for the nightly recommendations build.

    spark-submit jobs/recs.py [--as-of INSTANT] [--lake PATH] [--catalog FILE]

Same code and flags as `lakecdp recs build` (the lakecdp_score DAG runs it when LAKECDP_SPARK_SUBMIT is set);
settings come from conf/ and LAKECDP__* env vars.
"""

import sys

from lakecdp.cli import main

if __name__ == "__main__":
    sys.exit(main(["recs", "build", *sys.argv[1:]]))
