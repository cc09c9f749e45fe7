"""The paper: what Krizhevsky, Sutskever and Hinton (2012) state, and the conformance report.

- `numbers`: every number the paper gives, in one place (as `paper` where it is imported).
- `conformance`: a model of this package compared with the paper, layer by layer.
- `report`: the report `python -m keras_alexnet.verify` prints for such a model.
- `network`, `readers`, `onnx_reader`: any AlexNet (Keras, ONNX, a PyTorch state dict) as
  layer records.
- `matching`: those records matched to the paper's layers by order and kind, compared.
- `network_report`, `html_report`: the report of any AlexNet, as text, JSON or a page.
- `verification`: what the verify tool does with a model file.
"""
