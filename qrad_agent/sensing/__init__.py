"""Sensing: the hub that polls every driver, and the plausibility checks on what they read."""
