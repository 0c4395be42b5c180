"""Seeded synthetic e-commerce data: Segment-spec events with a known latent truth.

`generate_dataset(settings)` builds everything in memory; `write_dataset(settings, out_dir)`
writes events/part-*.jsonl, truth/customers.jsonl, crm/customers.csv and
catalog/products.csv. Same settings give byte-identical files.
"""

from lakecdp.generate.dataset import Dataset, generate_dataset
from lakecdp.generate.settings import BEHAVIOUR_TYPES, CATEGORIES, GeneratorSettings
from lakecdp.generate.writer import DatasetSummary, write_dataset

__all__ = [
    "BEHAVIOUR_TYPES",
    "CATEGORIES",
    "Dataset",
    "DatasetSummary",
    "GeneratorSettings",
    "generate_dataset",
    "write_dataset",
]
