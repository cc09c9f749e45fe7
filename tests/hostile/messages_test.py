"""Broken files end in one line naming the file and its fault, and exit 2, in every tool.

Each tool runs as its users run it, in a child process (`harness.run_tool`), two at a time;
the readers' many cases are tested without a process beside them (tests/paper/readers_test.py,
tests/runs/folder_test.py and lock_test.py, tests/weights/weight_files_test.py,
tests/data/folder_sources_test.py). Here: that each tool family turns them into its last
line, `error: ...`, exit 2 and no traceback; `verify` 1 only for a model it read.
"""

import concurrent.futures
import os
import pathlib
import shutil

import harness
import numpy as np
import pytest

from keras_alexnet.runs import folder as run_folder

# A file name that is not UTF-8: bytes 0xff, as Python names it (a surrogate escape).
NOT_UTF8 = os.fsdecode(b"cat_\xff.jpg")


def _run(*calls):
    """Runs each (tool, *args) with `harness.run_tool`, two at a time; their results."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda call: harness.run_tool(*call), calls))


@pytest.fixture(scope="module")
def cases(tmp_path_factory, trained):
    """The broken inputs, and each tool run on its own: {name: (input, harness.Result)}.

    Eight tool runs, two at a time: the TensorFlow start-ups are most of this file's time.
    """
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (an optional extra)")
    model_dir, root = trained
    tmp = tmp_path_factory.mktemp("messages")
    whole = tmp / "whole.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, whole)
    cut_pth = tmp / "cut.pth"
    cut_pth.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # was a traceback
    corrupt = tmp / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(range(256)))  # was "File not found"
    broken_onnx = tmp / "export" / "model.onnx"
    broken_onnx.parent.mkdir()
    broken_onnx.write_bytes(np.random.default_rng(0).bytes(2048))  # was a traceback
    cut_run = tmp / "cut_run"
    shutil.copytree(model_dir, cut_run)
    for data in (cut_run / run_folder.CHECKPOINTS).glob("ckpt-*.data-*"):
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # was a traceback
    image = next(p for p in (pathlib.Path(root) / "validation").rglob("*") if p.is_file())
    strange = tmp / NOT_UTF8
    shutil.copy(image, strange)  # was a traceback in predict and in explain
    data = tmp / "images"
    shutil.copytree(root, data)
    loop = data / "train" / "loop"
    os.symlink("loop", loop)  # was an OSError traceback
    plain = tmp / "plain.npy"
    np.save(plain, np.zeros((2, 3), np.float32))  # was "is a pickled .npy dict"
    train = ("--dataset=folder", "--variant=tiny", "--epochs=1", "--batch_size=4")
    calls = {
        "verify_pth": (cut_pth, ("verify", f"--model={cut_pth}")),
        "verify_keras": (corrupt, ("verify", f"--model={corrupt}")),
        "predict_onnx": (broken_onnx, ("predict", f"--model={broken_onnx}", image)),
        "predict_run": (cut_run, ("predict", f"--model_dir={cut_run}", image)),
        "predict_name": (strange, ("predict", f"--model_dir={model_dir}", strange)),
        "train_loop": (loop, ("train", f"--model_dir={tmp / 'run'}", f"--data_dir={data}", *train)),
        "explain_name": (
            strange,
            ("explain", f"--model_dir={model_dir}", f"--output_dir={tmp / 'page'}", strange),
        ),
        "convert_npy": (plain, ("convert", f"--output={tmp / 'out.keras'}", plain)),
    }
    results = _run(*(call for _, call in calls.values()))
    return {name: (calls[name][0], result) for name, result in zip(calls, results)}


def test_verify_exits_2_naming_a_model_file_it_cannot_read(cases):
    path, result = cases["verify_pth"]
    harness.assert_refused(result, path, "cut short")
    path, result = cases["verify_keras"]
    harness.assert_refused(result, path, "not a .keras file: not a zip archive")
    assert "not found" not in result.last_line


def test_predict_exits_2_naming_a_broken_model_or_run(cases):
    path, result = cases["predict_onnx"]
    harness.assert_refused(result, path, "not an ONNX model onnxruntime can load")
    path, result = cases["predict_run"]
    harness.assert_refused(result, path, "the checkpoint cannot be read")


def test_predict_reads_and_prints_an_image_whose_name_is_not_utf8(cases):
    path, result = cases["predict_name"]
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert os.fsencode(str(path)).decode("utf-8", "backslashreplace") in result.stdout


def test_train_explain_and_convert_exit_2_naming_the_file(cases):
    path, result = cases["train_loop"]
    harness.assert_refused(result, path, "a symbolic link that cannot be followed")
    path, result = cases["explain_name"]
    harness.assert_refused(result, "cat_\\xff.jpg", "not UTF-8")
    path, result = cases["convert_npy"]
    harness.assert_refused(result, path, "plain float32 array", "not a dict of layers")
