"""The one SparkSession factory."""
from lakecdp.spark.session import build_session, stop_session

__all__ = ["build_session", "stop_session"]
