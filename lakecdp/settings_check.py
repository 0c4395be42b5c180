"""Every conf section checked when a command, a DAG task or the demo starts.

The sections each capability parses itself (segments, esp, triggers, content, experiments,
models, collector, privacy, preferences) are parsed here once, up front: a typo fails at start with its file,
key and fix, not later inside a running stream's timer thread when the first trigger falls due. The file is
the one that set the key (conf/base, conf/local or a LAKECDP__ variable: Settings.sources).
An entry-point module (it imports every capability's settings, and `models`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakecdp.config import ConfigError, Settings
from lakecdp.config.sections import source_of

if TYPE_CHECKING:
    from lakecdp.collector.settings import CollectorSettings
    from lakecdp.content.settings import ContentSettings
    from lakecdp.experiments.settings import ExperimentSettings
    from lakecdp.export.settings import EspSettings
    from lakecdp.preferences.settings import PreferencesSettings
    from lakecdp.privacy.ledger import ConsentRules
    from lakecdp.segments.rules import Segment
    from lakecdp.triggers.settings import TriggerSettings
    from models.settings import ModelSettings

PRIVACY_KEYS = ("consent", "admin_token_sha256")  # admin_token_sha256: deprecated, see lakecdp.privacy.roles


@dataclass(frozen=True)
class CheckedSections:
    """The typed form of each capability's section, as its own parser builds it."""

    segments: list[Segment]
    esp: EspSettings
    triggers: TriggerSettings
    content: ContentSettings
    experiments: ExperimentSettings
    models: ModelSettings
    collector: CollectorSettings
    consent: ConsentRules
    preferences: PreferencesSettings


def check_sections(settings: Settings) -> CheckedSections:
    """Parse every capability's section; raise ConfigError (RuleError for segments) naming file, key and fix."""
    from lakecdp.collector.settings import load_collector_settings
    from lakecdp.content.settings import parse_content_settings
    from lakecdp.experiments.settings import parse_experiment_settings
    from lakecdp.export.settings import load_esp_settings
    from lakecdp.preferences.settings import load_preferences_settings
    from lakecdp.privacy.ledger import consent_rules
    from lakecdp.segments.rules import segments_of
    from lakecdp.triggers.settings import trigger_settings
    from models.settings import parse_model_settings

    sources = settings.sources
    unknown = sorted(set(settings.privacy) - set(PRIVACY_KEYS))
    if unknown:
        raise ConfigError(
            f"{source_of(('privacy', unknown[0]), sources)}: unknown key(s) {', '.join('privacy.' + k for k in unknown)}. "
            f"Fix: remove them or check the spelling (the keys are {', '.join(PRIVACY_KEYS)})."
        )
    segments = segments_of(settings)
    return CheckedSections(
        segments=segments,
        esp=load_esp_settings(settings.esp, segment_names=[s.name for s in segments], sources=sources),
        triggers=trigger_settings(settings.triggers, sources=sources),
        content=parse_content_settings(settings.content, sources=sources),
        experiments=parse_experiment_settings(settings.experiments, sources=sources),
        models=parse_model_settings(settings.models, sources=sources),
        collector=load_collector_settings(settings.collector, sources=sources),
        consent=consent_rules(settings.privacy, settings.esp, sources=sources),
        preferences=load_preferences_settings(settings.preferences, sources=sources),
    )
