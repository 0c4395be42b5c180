"""Data quality: Great Expectations suites (expectations/*.yaml) run on lake tables and export batches.

`lakecdp.quality.runner` runs suites and checkpoints (QualityGateFailed when a gate fails),
`lakecdp.quality.suites` loads them, `lakecdp.quality.results` keeps the results. Nothing is
imported here, so `lakecdp --help` does not pay for Great Expectations.
"""
