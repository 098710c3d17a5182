"""What a finished connection leaves for the cyclic garbage collector."""

from __future__ import annotations

import gc
from typing import Any


def cyclic_garbage(*types: type) -> list[Any]:
    """Objects of ``types`` that only the cyclic garbage collector would free
    (a server with raised GC thresholds would hold them for a long time)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
    finally:
        gc.set_debug(0)
    found = [obj for obj in gc.garbage if isinstance(obj, types)]
    gc.garbage.clear()
    return found
