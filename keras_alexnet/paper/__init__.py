"""The paper: what Krizhevsky, Sutskever and Hinton (2012) state, and the conformance report.

- `numbers`: every number the paper gives, in one place (as `paper` where it is imported).
- `conformance`: a model compared with the paper, layer by layer.
- `report`: the report `python -m keras_alexnet.verify` prints.
"""
