"""spark-submit entry point for ESP exports.

    spark-submit jobs/export.py [--destination NAME ...] [--lake PATH] [--full] [--report FILE] [--membership-version N]

Same code and flags as `lakecdp export run` (the lakecdp_export DAG runs it when LAKECDP_SPARK_SUBMIT is set);
settings come from conf/ and LAKECDP__* env vars.
"""

import sys

from lakecdp.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", "run", *sys.argv[1:]]))
