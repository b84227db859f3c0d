"""The environment variables the agent reads: one allow-list, each value checked with an error naming it.

Settings (override the configuration file, so that a fleet image carries one file):

- ``QRAD_DEVICE_ID``: ``device_id`` (same form as in the file: `DEVICE_ID_PATTERN`);
- ``QRAD_MQTT_USERNAME``: ``platform.username`` (1-256 printable characters);
- ``QRAD_MQTT_PASSWORD``: ``platform.password`` (1-4096 characters, never logged).

Known ``QRAD_*`` variables that are not agent settings: ``QRAD_WEATHER_FILE`` (the simulator's weather
file), ``QRAD_JOB_ID`` and ``QRAD_CORES`` (set by the agent for the jobs it runs).

systemd's variables the agent reads: ``NOTIFY_SOCKET`` (an absolute path, or ``@name`` for the abstract
namespace) and ``WATCHDOG_USEC`` (a positive whole number of microseconds).

For ``run`` and ``config check``, any other ``QRAD_*`` variable is an error naming it and the nearest known
one (a misspelt ``QRAD_MQTT_PASSWRD`` must not leave the heater silently without its password).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from qrad_agent.errors import ConfigError

ENV_SOURCE = "environment"
"""`ConfigError.source` of a problem with an environment variable."""
DEVICE_ID_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
"""The one form of a device id, which is also its MQTT topic level and its certificate's CN (checked when
the certificate is issued: `qrad_agent.sync.provision`): 1-63 letters, digits and '-', not starting or
ending with '-' (a DNS label). No '/', '+', '#', '.', '_', spaces or control characters."""

SETTINGS: dict[str, tuple[str, ...]] = {
    "QRAD_DEVICE_ID": ("device_id",),
    "QRAD_MQTT_USERNAME": ("platform", "username"),
    "QRAD_MQTT_PASSWORD": ("platform", "password"),
}
"""Variable -> the configuration path it overrides."""
KNOWN_NON_SETTINGS = frozenset({"QRAD_WEATHER_FILE", "QRAD_JOB_ID", "QRAD_CORES"})
PREFIX = "QRAD_"
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,256}$")


def _check_value(var: str, value: str) -> str | None:
    """Why ``value`` is not acceptable for setting ``var``, or None."""
    if var == "QRAD_DEVICE_ID" and not re.fullmatch(DEVICE_ID_PATTERN, value):
        return (f"{value[:80]!r} is not a device id: 1-63 characters of A-Z a-z 0-9 and '-', not starting "
                "or ending with '-'")
    if var == "QRAD_MQTT_USERNAME" and not _PRINTABLE.fullmatch(value):
        return "must be 1-256 printable ASCII characters without spaces"
    if var == "QRAD_MQTT_PASSWORD" and not 1 <= len(value) <= 4096:
        return "is set but empty (unset it for no password)" if not value else "longer than 4096 characters"
    return None


def nearest(var: str) -> str | None:
    """The known variable closest to ``var`` (difflib ratio >= 0.6), or None."""
    known = sorted(SETTINGS) + sorted(KNOWN_NON_SETTINGS)
    match = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
    return match[0] if match else None


def setting_problems(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, reason) for each setting variable present with a bad value."""
    return [(var, reason) for var in SETTINGS if var in environ
            for reason in [_check_value(var, environ[var])] if reason is not None]


def unknown_problems(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, reason) for each ``QRAD_*`` variable that is neither a setting nor a known non-setting."""
    problems = []
    for var in sorted(environ):
        if var.startswith(PREFIX) and var not in SETTINGS and var not in KNOWN_NON_SETTINGS:
            hint = nearest(var)
            problems.append((var, "unknown variable" + (f"; did you mean {hint}?" if hint else
                                                        f"; known: {', '.join(sorted(SETTINGS))}")))
    return problems


def systemd_problems(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, reason) for a malformed ``NOTIFY_SOCKET`` or ``WATCHDOG_USEC``."""
    problems = []
    notify = environ.get("NOTIFY_SOCKET")
    if notify is not None and notify and not notify.startswith(("/", "@")):
        problems.append(("NOTIFY_SOCKET", f"{notify[:80]!r}: not an absolute path or @abstract name"))
    usec = environ.get("WATCHDOG_USEC")
    if usec is not None and not (usec.isascii() and usec.isdigit() and int(usec) > 0):
        problems.append(("WATCHDOG_USEC", f"{usec[:40]!r}: not a positive whole number of microseconds"))
    return problems


def check_environment(environ: Mapping[str, str], *, strict: bool) -> None:
    """Raise ConfigError (source "environment") listing every bad variable; ``strict`` adds unknown
    ``QRAD_*`` variables and systemd's (for ``run`` and ``config check``)."""
    problems = setting_problems(environ)
    if strict:
        problems += unknown_problems(environ) + systemd_problems(environ)
    if problems:
        raise ConfigError(ENV_SOURCE, problems)
