"""Field operations: what technicians ask of a heater on site (explain, self-test, authorisation)."""
