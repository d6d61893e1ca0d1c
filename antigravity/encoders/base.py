"""The encoder interface the engine uses for its student.

:class:`EncoderProtocol` is a :class:`typing.Protocol`: :class:`antigravity.encoders.model.Encoder`
implements it, and so can any object passed as ``AntigravityEngine(encoder=...)`` (the test
suite's ``HashEncoder`` does). ``isinstance(obj, EncoderProtocol)`` checks that the members
exist (on Python 3.11 that reads ``dim``, which loads an unregistered model).

Optional members the engine also reads when present (see
:func:`antigravity.stores.manifest.student_identity`): ``identity()``, or the attributes
``revision``, ``max_seq_length``, ``precision`` (``"fp32"``/``"bf16"``; the older ``bf16`` flag
is still read) and ``normalized``.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class EncoderProtocol(Protocol):
    """A text encoder: ``n`` strings in, ``(n, d) float32`` L2-normalised rows out.

    Attributes:
        name: the model's name (recorded in manifests and adapter metadata).
        dim: the embedding dimension ``d``.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: ``(n, d) float32``, rows L2-normalised, in the order of ``texts``;
        ``(0, d)`` for no texts. May read and write an embedding cache (documents are encoded
        once, and again after an interruption).

        Raises:
            TypeError: an item of ``texts`` is not a string.
        """
        ...

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`encode` without any cache: neither read nor written. The engine embeds
        queries with it, because query traffic is unbounded and rarely repeats.

        Raises:
            TypeError: an item of ``texts`` is not a string.
        """
        ...

    def release(self) -> None:
        """Free the model's memory; the next :meth:`encode` loads it again."""
        ...
