"""The lab's error: one line saying which part failed and what to do.

Its own module, below everything else of the lab: the seeding, the checks and the lab itself all raise it,
and none of them needs to import another to do so (``seed`` once imported ``lab`` lazily for it).
"""

from __future__ import annotations

from ..errors import EnsembleError

__all__ = ["LabError"]


class LabError(EnsembleError):
    """A lab operation failed; str() is one line saying what and what to do."""
