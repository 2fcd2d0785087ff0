"""OCR service: the gRPC API (Read) and the pipeline stage, over one TextReader."""

from __future__ import annotations

import grpc
from PIL import Image

from visearch.services.ocr.reader import TextLine, TextReader
from visearch.shared.config import ImageSettings
from visearch.shared.errors import InvalidEventError
from visearch.shared.grpcutil import rpc_method
from visearch.shared.images import decode_request_images
from visearch.shared.pipeline import ImageStage
from visearch.v1 import common_pb2, events_pb2, ocr_pb2, ocr_pb2_grpc

SERVICE_NAME = "visearch.v1.OcrService"
MAX_IMAGES_PER_REQUEST = 16


def line_message(line: TextLine) -> common_pb2.TextLine:
    """The protobuf form of a :class:`TextLine` (polygon in original pixels)."""
    return common_pb2.TextLine(
        text=line.text, score=line.score, polygon=[common_pb2.Point(x=x, y=y) for x, y in line.polygon]
    )


class OcrService(ocr_pb2_grpc.OcrServiceServicer):
    """gRPC servicer: at most 16 images per request; INVALID_ARGUMENT names the first bad image."""

    def __init__(self, reader: TextReader, image_settings: ImageSettings | None = None) -> None:
        self.reader = reader
        self.image_settings = image_settings or ImageSettings()

    @rpc_method(SERVICE_NAME)
    def Read(self, request: ocr_pb2.ReadRequest, context: grpc.ServicerContext | None) -> ocr_pb2.ReadResponse:  # noqa: N802
        """The lines of text in each image, in reading order (``det_max_side``: a smaller, faster detector pass).

        Raises INVALID_ARGUMENT for a bad image or a negative ``det_max_side``.
        """
        if request.det_max_side < 0:
            raise InvalidEventError(f"det_max_side must be >= 0, got {request.det_max_side}", reason="bad_det_max_side")
        images = decode_request_images(request.images, self.image_settings, MAX_IMAGES_PER_REQUEST)
        response = ocr_pb2.ReadResponse(model=self.reader.model_name)
        for lines in self.reader.read(images, det_max_side=request.det_max_side):
            response.results.add(
                lines=[line_message(line) for line in lines], text="\n".join(line.text for line in lines)
            )
        return response


class OcrStage(ImageStage):
    """Pipeline stage: adds each upsert's text lines to its document."""

    name = "ocr"

    def __init__(self, reader: TextReader, image_settings: ImageSettings | None = None) -> None:
        super().__init__(image_settings)
        self.reader = reader

    def process_images(
        self, documents: list[events_pb2.ImageDocument], images: list[Image.Image], encoded: list[bytes]
    ) -> None:  # noqa: D102
        for doc, lines in zip(documents, self.reader.read(images)):
            del doc.text_lines[:]
            doc.text_lines.extend(line_message(line) for line in lines)
