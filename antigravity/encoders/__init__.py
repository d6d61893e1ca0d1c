"""encoders: the :class:`EncoderProtocol` interface, the sentence-transformers :class:`Encoder`
and its on-disk :class:`EmbeddingCache`."""

from antigravity.encoders.base import EncoderProtocol
from antigravity.encoders.cache import EmbeddingCache
from antigravity.encoders.model import Encoder

__all__ = ["EmbeddingCache", "Encoder", "EncoderProtocol"]
