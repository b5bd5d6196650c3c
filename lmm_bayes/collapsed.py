"""The collapsed method: random effects integrated out of the Gaussian likelihood.

(Being written; until then method='auto' uses the full model.)
"""

from __future__ import annotations

from .design import Design

__all__ = ["supports"]


def supports(design: Design) -> tuple[bool, str]:
    """Whether the collapsed method applies to this design, and why not."""
    return False, "the collapsed method is not available yet"
