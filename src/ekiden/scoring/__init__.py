"""Rule-based scores: definitions, the awarded-points ledger, current values and history."""
