"""What a run wrote for TensorBoard, read back from its event files."""

import glob

import tensorflow as tf


def logged_scalars(log_dir, tag):
    """{step: value} of a scalar in the TensorBoard event files of log_dir."""
    values = {}
    for path in glob.glob(str(log_dir / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def logged_values(log_dir, tag):
    """[(step, tf.compat.v1.Summary.Value)] of a tag in the event files of log_dir."""
    found = []
    for path in sorted(glob.glob(str(log_dir / "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            found += [(event.step, value) for value in event.summary.value if value.tag == tag]
    return found
