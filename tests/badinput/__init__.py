"""The bad-input corpus: malformed, hostile and unusual images and events, each with its expected outcome."""
