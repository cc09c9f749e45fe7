"""A training run's folder (model_dir): what it holds, who holds it, and how it is set up.

- `folder`: the files a run leaves in its model_dir, and reading them back.
- `lock`: one training run per model_dir.
- `record`: the `Run` record, checked and written before the first step.
"""
