"""Events: the Segment-spec wire format, validation, and the bronze/quarantine split."""
