"""Third-party enrichment: attributes from outside sources, with provenance, only where consent allows."""
