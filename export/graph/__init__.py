"""The CAM graph: a torch classifier traced with its CAM folded in (heads, gradcam, cam_graph, checked
against the eager model by eager, checks and verify), and an ONNX classifier CAM-ified by graph
surgery (surgery, onnx_*: onnx and numpy only, no torch)."""
