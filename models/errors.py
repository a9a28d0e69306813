"""Errors the diffusion engine raises, each with a sentence fit to show a user.

The bot maps every ``ModelError`` to an ephemeral reply with ``str(error)``, so
the message is one plain sentence: what went wrong and, where possible, what to
do about it. Tracebacks and library details stay in ``__cause__`` for the log.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base class: ``str(error)`` is one sentence a user can read."""


class ModelUnavailable(ModelError):
    """The model does not exist or cannot be loaded here."""


class UnsafeCheckpoint(ModelUnavailable):
    """A pickle checkpoint (``.ckpt``/``.pt``/``.pth``/``.bin``): refused, never opened.

    Unpickling runs arbitrary code from the file, so it is not even inspected.
    """


class InvalidBatch(ModelError):
    """A batch the engine cannot run as specified (a size, strength or scheduler it rejects).

    The bot validates requests first; this is the backstop, with the allowed
    range in the sentence.
    """


class GenerationOutOfMemory(ModelError):
    """A single image still does not fit in GPU memory after the batch was split."""


class GenerationInterrupted(ModelError):
    """The run was stopped on request (``should_interrupt`` returned true)."""
