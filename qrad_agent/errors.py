"""The agent's error tree: every error the agent raises on purpose derives from `AgentError`.

Library and OS errors are wrapped at the edge (``raise ... from exc``) so callers handle one family.
Exit codes follow sysexits(3): EX_CONFIG = 78 for a bad configuration.
"""

from __future__ import annotations

EX_CONFIG = 78
"""sysexits(3) exit status for a configuration error."""

EX_UNAVAILABLE = 69
"""sysexits(3) exit status for a service that is unavailable (the agent does not answer)."""

EX_SOFTWARE = 70
"""sysexits(3) exit status for an internal software error (a component died)."""

EX_CANTCREAT = 73
"""sysexits(3) exit status for an output file that cannot be created (e.g. a full filesystem)."""


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class Refused(AgentError):
    """A change the agent refuses (the one command surface: local API and platform alike); the message says
    why. ``usage``: the request itself is wrong (an unknown name, a value out of range), so the CLI exits 2
    rather than 1 (a refusal of a well-formed request)."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


class ConfigError(AgentError):
    """The configuration file is missing, unreadable, not TOML, or fails validation.

    ``problems`` lists one ``(path, reason)`` pair per wrong field, path written ``a.b[2].c``.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path}: {reason}" for path, reason in problems]
        super().__init__("\n".join(lines))


class ActuatorError(AgentError):
    """A power interface (cpufreq, RAPL, cgroup) refused a write or is missing a file."""


class ComponentDied(AgentError):
    """A supervised component ended or raised; the agent stops with a non-zero exit."""

    def __init__(self, component: str, cause: BaseException | None) -> None:
        self.component = component
        self.cause = cause
        detail = f"{type(cause).__name__}: {cause}" if cause else "returned unexpectedly"
        super().__init__(f"component {component!r} died: {detail}")


class ResetRefused(AgentError):
    """A latched safety condition cannot be reset yet: its cause still holds (the message says which)."""
