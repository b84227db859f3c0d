"""Readable tables of what the local API returns, for the CLI."""

from __future__ import annotations

from typing import Any


def sensors_table(status: dict[str, Any]) -> str:
    """One line per channel: name, value, unit, age, quality, reason; then the drivers not open."""
    lines = [f"{'channel':<22}{'value':>12} {'unit':<8}{'age s':>8}  {'quality':<13}reason"]
    for name, ch in sorted(status["channels"].items()):
        value = "-" if ch["value"] is None else f"{ch['value']:.6g}"
        age = "-" if ch["age_s"] is None else f"{ch['age_s']:.1f}"
        lines.append(f"{name:<22}{value:>12} {ch['unit']:<8}{age:>8}  {str(ch['quality']):<13}{ch['reason'][:60]}")
    troubled = {n: d for n, d in status["drivers"].items() if d["state"] != "open" or d["last_error"]}
    for name, d in sorted(troubled.items()):
        lines.append(f"device {name} ({d['type']}): {d['state']}, {d['consecutive_failures']} failure(s), "
                     f"{d['reconnects']} reconnect(s); last error: {d['last_error'][:80]}")
    return "\n".join(lines)
