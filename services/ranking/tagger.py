"""The open tagger (Tag): phrases from the linked text of an image's visual neighbours (``open_tags.py``),
beside the image's own model tags."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from visearch.services.ranking.open_tags import aggregate_phrases
from visearch.shared.errors import InvalidEventError, NotFoundError
from visearch.shared.store import MilvusStore, SearchFilter
from visearch.v1 import classification_pb2, common_pb2, search_pb2

if TYPE_CHECKING:
    from visearch.services.ranking.understanding import QueryUnderstanding

DEFAULT_TAG_NEIGHBOURS, MAX_TAG_NEIGHBOURS = 20, 200
DEFAULT_TAG_PHRASES, MAX_TAG_PHRASES = 10, 100
LINKED_TEXT_FIELDS = ("title", "description", "ocr_text")


class OpenTagger:
    """Tags an indexed image (by id) or a given one (embedded, and classified when a classification stub is set).

    ``understanding``: the search's :class:`~visearch.services.ranking.understanding.QueryUnderstanding`
    (its embedding and classification stubs and call deadlines).
    """

    def __init__(self, store: MilvusStore, understanding: QueryUnderstanding, default_tenant: str) -> None:
        self.store = store
        self.understanding = understanding
        self.default_tenant = default_tenant

    def tag(self, request: search_pb2.TagRequest) -> search_pb2.TagResponse:
        """See TagRequest in protos/visearch/v1/search.proto.

        Raises:
            InvalidEventError: neighbours or top_n out of range, or no item given.
            NotFoundError: an image id that is not indexed.
        """
        neighbours = request.neighbours or DEFAULT_TAG_NEIGHBOURS
        top_n = request.top_n or DEFAULT_TAG_PHRASES
        if not 1 <= neighbours <= MAX_TAG_NEIGHBOURS or not 1 <= top_n <= MAX_TAG_PHRASES:
            raise InvalidEventError(
                f"neighbours must be in 1..{MAX_TAG_NEIGHBOURS}, top_n in 1..{MAX_TAG_PHRASES}", reason="bad_top_k"
            )
        tenant, flt = request.tenant or self.default_tenant, SearchFilter()
        item = request.WhichOneof("item")
        response = search_pb2.TagResponse()
        if item == "image_id":
            row = self.store.get(tenant, request.image_id, "image")
            if row is None:
                raise NotFoundError(f"image {request.image_id!r} is not indexed for tenant {tenant!r}")
            flt.exclude_image_ids.append(request.image_id)
            vector = np.asarray(row["vector"], dtype=np.float32)
            response.model_tags.extend(
                common_pb2.Attribute(name=n, value=v, score=s) for n, v, s in json.loads(row.get("attributes") or "[]")
            )
        elif item == "image":
            vector = np.asarray(self.understanding.embed_image(request.image).image.values, dtype=np.float32)
            if self.understanding.classification is not None:
                result = self.understanding.call(
                    self.understanding.classification,
                    "Classify",
                    classification_pb2.ClassifyRequest(images=[request.image]),
                )
                response.model_tags.extend(result.results[0].attributes)
        else:
            raise InvalidEventError("set image_id or image", reason="empty_query")
        hits = self.store.search("image", vector, tenant=tenant, top_k=neighbours, filter=flt)
        texts = [(h.score, [h.fields.get(f, "") for f in LINKED_TEXT_FIELDS if h.fields.get(f)]) for h in hits]
        for phrase, score in aggregate_phrases(texts, top_n=top_n):
            response.phrases.add(name="phrase", value=phrase, score=score)
        response.neighbours_used = len(hits)
        return response
