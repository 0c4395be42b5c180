"""Triggers: segment entries -> durable outbox -> re-checked, consented, capped sends."""
