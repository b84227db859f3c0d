"""Signed over-the-air updates of the agent: verify a bundle, install it beside the running version,
switch atomically, restart, check health, roll back on failure (docs/update.md)."""
