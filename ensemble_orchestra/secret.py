"""A string that never shows itself: repr, str and format all print a mask.

Passwords and the admin secret travel as Secret from the moment the config is
read; only the code that must send one (an Authorization header, an XML-RPC
login) calls reveal().
"""

from __future__ import annotations

__all__ = ["MASK", "Secret", "reveal"]

MASK = "********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("a Secret is not pickled")


def reveal(value: str | Secret) -> str:
    """The plain text of *value*, whether it is a Secret or already a str."""
    return value.reveal() if isinstance(value, Secret) else value
