"""stores: the :class:`VectorStore` interface and its implementations — :class:`QdrantStore`
(qdrant-client: local mode or a server) and :class:`EdgeStore` (an embedded Qdrant Edge shard) —
plus :func:`parse_filter` for search filters."""

from antigravity.stores.base import RAW, SLOTS, VectorStore
from antigravity.stores.edge import EdgeStore
from antigravity.stores.filters import parse_filter
from antigravity.stores.qdrant import QdrantStore

__all__ = ["RAW", "SLOTS", "EdgeStore", "QdrantStore", "VectorStore", "parse_filter"]
