"""How time offsets are stated in error messages (token and assertion times against the clock).

A check such as ``iat > now + leeway`` compares real numbers: an offset of 30.4 s fails a 30 s
leeway. Cutting it to whole seconds ("issued 30 s in the future (leeway 30 s)") contradicts the
refusal, so offsets are stated to the tenth of a second, rounded away from the limit.
"""

from __future__ import annotations

import math

__all__ = ["seconds"]


def seconds(offset: float) -> str:
    """``offset`` (positive) in seconds, rounded up to a tenth: ``31``, ``30.1``, ``0.3``."""
    return f"{math.ceil(round(offset * 10, 3)) / 10:g}"  # round first: float noise is no tenth
