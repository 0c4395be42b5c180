"""spark-submit entry point for the events stream.

    spark-submit jobs/stream_events.py [--until-idle] [--lake PATH] [--source DIR] [--checkpoint DIR]

Same code and flags as `lakecdp stream run`; settings come from conf/ and LAKECDP__* env vars.
"""

import sys

from lakecdp.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", "run", *sys.argv[1:]]))
