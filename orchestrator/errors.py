"""The one error type that reaches the user as exit status 2 and a single line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the CLI prints ``error: <message>`` on one line and exits with status 2.

    The message says what is wrong and how to mend it. It must never carry credentials.
    """


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)
