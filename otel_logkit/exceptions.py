"""Errors raised by otel-logkit. A leaf module: it imports nothing from the package."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """An environment variable (or ``configure()`` argument) holds a value otel-logkit rejects.

    Args:
        variable: the name the user set, e.g. ``LOGKIT_LOG_FORMAT``.
        value: the rejected value, as given.
        accepted: what is accepted, in words or as a list of choices.
    """

    def __init__(self, variable: str, value: object, accepted: str | Iterable[str]) -> None:
        self.variable = variable
        self.value = value
        self.accepted = accepted if isinstance(accepted, str) else "one of " + ", ".join(accepted)
        super().__init__(f"{variable}={value!r} is invalid: expected {self.accepted}")
