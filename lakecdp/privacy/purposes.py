"""Consent purposes and statuses, importable without Spark (the collector and the preference centre run without it)."""

from __future__ import annotations

EMAIL_MARKETING, PERSONALIZATION, PROFILING = "email_marketing", "personalization", "profiling"
ENRICHMENT = "enrichment"  # third-party data (lakecdp.enrich): opt-in or opt-out by each source's legal basis
GRANTED, WITHDRAWN = "granted", "withdrawn"
# The consent ledger's source prefix for facts a CRM import recorded (lakecdp.privacy.ledger.entries_from_customers);
# the email rule leaves them out and reads the CRM's flag itself, from `customers`.
CRM_SOURCE = "import:"
# The collector lands the preference centre's events under this source name (context.source), which no
# write key may carry: the ledger trusts such an event's link id as proof (lakecdp.privacy.ledger).
PREFERENCE_CENTRE = "preference_centre"
# The track event a data-copy request becomes (the preference centre sends it; `lakecdp privacy access-requests` lists it).
ACCESS_REQUESTED = "Data Access Requested"
