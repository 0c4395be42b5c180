"""Customer profiles folded from bronze events."""

from lakecdp.profiles.features import build_profile_features

__all__ = ["build_profile_features"]
