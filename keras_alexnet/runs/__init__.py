"""A training run on disk, which training, serving and the benchmarks all read.

- `folder`: the files a run leaves in its model_dir (run.json, the training set's
  statistics, the class names, the checkpoints), and reading them back.
- `lock`: one training run per model_dir, and its heartbeat.
- `write_errors`: writes that fail (a full disk, a read-only folder), named with their cause.
- `dataset`: the images a run names (--dataset), checked and opened, and found again.
- `model_files`: the model a tool works on, a run (--model_dir) or a file (--model).

Below training and serving: this package imports neither (`training.run_record` prepares a
run and writes its record here).
"""
