"""The CAM graph converted to TFLite with litert-torch, and checked against the eager model and ONNX (convert)."""
