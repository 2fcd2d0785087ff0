"""One package per service (embedding, indexer, ranking; detection, ocr, classification to come)."""
