"""Flows: the one place that orchestrates capabilities.

A flow reads through the lake adapter, hands DataFrames to the capabilities' steps (which do no
I/O), and writes what they return. Three flows run the product:

- `micro_batch`: a batch of events -> identities -> profiles -> segments (and the trigger outbox);
- `timers`: due segment timers re-evaluated, due trigger sends re-checked and sent;
- `nightly`: what the Airflow DAGs run (train, score, recommendations, export, maintenance).

Layers, each importing only from those below it (tests/unit/test_layers.py holds this):
runners (cli, `*.commands`, stream, demo, dags/, jobs/) > flows, observe > models > capabilities > base.
"""
