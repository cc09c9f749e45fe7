"""Benchmarks: how fast the model trains and infers, the input pipeline, the export formats.

- `model_speed`: training and inference images/s, fractions of the machine's peak.
- `torch_alexnet`, `torch_process`: the paper's network in PyTorch, the peer `model_speed`
  measures in a process of its own (PyTorch is optional).
- `input_speed`: the input pipeline on image files and on prepared shards.
- `format_speed`, `format_process`: what each exported format costs and keeps, each file
  timed in a process of its own; where the LiteRT files spend their time.
"""
