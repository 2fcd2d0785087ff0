"""visearch: visual search and recognition platform.

The repository's top-level ``shared/`` and ``services/`` folders install as ``visearch.shared`` and
``visearch.services``; generated protobuf code is ``visearch.v1``.
"""

__version__ = "0.1.0"
