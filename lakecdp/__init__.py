"""lakecdp: lakehouse customer-data pipeline for real-time email personalization."""

__version__ = "0.1.0"
