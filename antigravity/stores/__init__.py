"""stores: the :class:`VectorStore` interface and its Qdrant implementation."""

from antigravity.stores.base import RAW, SLOTS, VectorStore
from antigravity.stores.qdrant import QdrantStore

__all__ = ["RAW", "SLOTS", "QdrantStore", "VectorStore"]
