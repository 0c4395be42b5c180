"""`lakecdp demo`: every part of the product on generated data (lakecdp.demo.run)."""

from lakecdp.demo.run import SUMMARY_TABLES, DemoFailed, DemoResult, run_demo

__all__ = ["SUMMARY_TABLES", "DemoFailed", "DemoResult", "run_demo"]
