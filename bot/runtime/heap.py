"""Keeping the garbage collector's full passes short in a long-running bot.

A loaded model, torch, transformers and discord.py leave a heap of a million or more
long-lived Python objects. CPython's full (generation 2) collection walks all of them,
and on a small host that pause reached hundreds of milliseconds: long enough for a
burst of ``/imagine`` to miss Discord's 3-second window. Objects that exist once
start-up is done live as long as the process, so they are moved out of the
collector's sight with ``gc.freeze``; later full passes walk only what came after.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_long_lived_objects() -> int:
    """Collect what is garbage now, then exempt every surviving object from later passes.

    Call it when a phase that builds long-lived objects ends (start-up, a model load).
    Returns how many objects are frozen in all.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("%d long-lived objects exempted from garbage collection", frozen)
    return frozen
