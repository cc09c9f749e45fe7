"""Serving: the exports, the other formats, and prediction.

- `saved_model`: the SavedModel and .keras export of a trained run.
- `formats`: LiteRT (TensorFlow Lite) and ONNX files, and the runtimes that run them.
- `runtimes`: the LiteRT and ONNX runners alone (NumPy and the runtime, no TensorFlow).
- `prediction`: top-5 predictions for image files.
- `graph_ops`: what a SavedModel folder's graph runs, read before it is loaded; a graph
  of operations the package's exports never use is refused unless trusted.
- `explanations`, `explain_page`: Grad-CAM, top-5 and fc7 neighbours of images, and their
  page (the explain tool).
"""
