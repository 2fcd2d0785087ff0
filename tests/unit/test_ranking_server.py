"""The ranking server's wiring: it calls the embedding service it is given and never builds one itself."""

from __future__ import annotations

import pytest

from visearch.services.ranking.server import embedding_stub
from visearch.shared.errors import ConfigError


def test_the_embedding_service_is_required():
    with pytest.raises(ConfigError, match="VISEARCH_EMBEDDING_ADDR"):
        embedding_stub("")
    marker = object()
    assert embedding_stub(None, marker) is marker  # the composition root's in-process stub
    assert type(embedding_stub("127.0.0.1:1", marker)).__name__ == "EmbeddingServiceStub"
