"""`python -m lakecdp.spark`: resolve the configured session's Maven packages once (make setup, make jars)."""

from lakecdp.spark.jars import main

raise SystemExit(main())
