"""The one SparkSession factory."""

from lakecdp.spark.jars import JarResolutionError
from lakecdp.spark.session import build_session, session_for, stop_session

__all__ = ["JarResolutionError", "build_session", "session_for", "stop_session"]
