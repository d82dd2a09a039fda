"""PollenError: an error with a stable code from Pollen's catalogue (docs/errors.md) and a hint."""

from __future__ import annotations


class PollenError(Exception):
    """``code`` as in src/errors.ts (e.g. ``UNAVAILABLE``, ``RUN_FAILED``); ``hint`` says what to do."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.code}: {self.args[0]}"
