"""Antigravity: an adaptive retrieval engine.

Documents live in Qdrant; a small sentence-transformers *student* embeds documents and
queries; a lightweight residual *adapter* on the embeddings is improved by label-free
homeostatic correction and by distillation from a stronger *teacher*.
"""

from antigravity.engine import AntigravityEngine, SearchHit
from antigravity.core.errors import AntigravityError
from antigravity.settings import Settings

__version__ = "0.1.0"
__all__ = ["AntigravityEngine", "SearchHit", "Settings", "AntigravityError", "__version__"]
