"""`lakecdp status` and `lakecdp report`: the lake's health read through delta-rs and its JSON artifacts, no Spark."""
