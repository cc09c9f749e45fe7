"""Benchmarks: how fast the model trains and infers, the input pipeline, the export formats.

- `model_speed`: training and inference images/s, fractions of the machine's peak.
- `input_speed`: the input pipeline on image files and on prepared shards.
- `format_speed`: what each exported format costs and keeps.
"""
