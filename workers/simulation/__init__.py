"""Robot annotators that drive a running Maskloop through its public API (issue: the data engine loop).

The robots decode masks with the project's ONNX decoder in onnxruntime exactly as the browser does,
place clicks with the evaluation protocol's robot clicker against ground-truth masks, and submit
annotations with the clicks used and simulated seconds from a documented cost model.
"""
