"""Segments: the rule language, its compiler to Spark Columns, and membership tracking."""
from lakecdp.segments.compile import evaluate_segments
from lakecdp.segments.membership import plan_membership
from lakecdp.segments.rules import RuleError, Segment, parse_segments

__all__ = ["RuleError", "Segment", "evaluate_segments", "parse_segments", "plan_membership"]
