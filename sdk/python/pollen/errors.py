"""PollenError: the SDK's one error class, with a stable code from Pollen's catalogue
(docs/errors.md) and a hint. The SDK's refusals (RecordError, MessageError, ChunkError, …) are
PollenErrors too, each also a ValueError or RuntimeError as Python code expects."""

from __future__ import annotations

from typing import ClassVar, Optional


class PollenError(Exception):
    """``code`` as in src/errors.ts (e.g. ``UNAVAILABLE``, ``RUN_FAILED``); ``hint`` says what to do."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class CodedError(PollenError):
    """A PollenError whose subclass fixes the code: ``RecordError("...")``."""

    CODE: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(self.CODE, message, hint)


def describe(e: BaseException) -> str:
    """``CODE: message`` for a PollenError (or another exception with an upper-case ``code``),
    ``Type: message`` for any other exception: the reason an error reply or a run carries."""
    code: Optional[str] = getattr(e, "code", None)
    if isinstance(e, PollenError):
        return str(e)
    if isinstance(code, str) and code.isupper():
        return f"{code}: {e}"
    return f"{type(e).__name__}: {e}"
