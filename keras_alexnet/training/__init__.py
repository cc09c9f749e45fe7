"""Training: the run's settings, strategies, steps, state, and the loop that ties them.

- `config`: the recipes and `TrainConfig`.
- `distribute`: `tf.distribute` strategies; `steps`: the per-replica train and eval steps.
- `schedule`, `metrics`: the learning-rate schedules; top-1 and top-5.
- `state`: what a run saves and resumes; `run_record`: the run prepared and recorded
  (its folder and lock: `keras_alexnet.runs`).
- `trainer`: the training loop; `evaluation`: the paper's test measure.
- `launcher`: several training workers on one machine; `worker_output`: their lines on its console.
- `preemption`, `summaries`: signals, TensorBoard.
- `hparams`, `projector`: the run's settings (Text, HParams) and fc7 vectors in TensorBoard.
"""
