"""Segments: the rule language, its compiler to Spark Columns, and membership tracking."""

from lakecdp.segments.compile import evaluate_segments
from lakecdp.segments.membership import compare_membership, plan_membership
from lakecdp.segments.rules import RuleError, Segment, parse_segments, segments_of

__all__ = ["RuleError", "Segment", "compare_membership", "evaluate_segments", "parse_segments", "plan_membership", "segments_of"]
