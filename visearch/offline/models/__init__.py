"""Model builds: export each source model to ONNX, check parity with its source, install it in the cache."""
