"""The entry points' shared runner: TensorFlow's INFO lines stay off the console, --help
lists each tool's own flags, and TensorFlow's load-time lines are left out of stderr."""

import configparser
import importlib
import inspect
import os
import re
import sys
import textwrap

import fresh_process
import pytest

from keras_alexnet import cli
from keras_alexnet import startup

SCRIPT = textwrap.dedent(
    """
    from absl import flags
    from absl import logging

    from keras_alexnet import cli


    def define_flags():
        flags.DEFINE_string("word", "none", "A word to log.")


    def main(argv):
        logging.info("info %s", flags.FLAGS.word)
        logging.warning("warning %s", flags.FLAGS.word)
        return 3


    cli.run(main, define_flags)
    """
)


VERBOSITIES = {None: False, "0": True, "-1": False}  # --verbosity: whether INFO is shown


@pytest.fixture(scope="module")
def tool_runs(tmp_path_factory):
    """{verbosity: the CompletedProcess of SCRIPT run with it}: the runs go side by side."""
    script = tmp_path_factory.mktemp("tool") / "tool.py"
    script.write_text(SCRIPT)
    commands = {
        verbosity: [sys.executable, str(script), "--word=hello"]
        + ([f"--verbosity={verbosity}"] if verbosity is not None else [])
        for verbosity in VERBOSITIES
    }
    results = fresh_process.run_together(*commands.values(), timeout=120)
    return dict(zip(commands, results))


@pytest.mark.parametrize("verbosity, info_shown", VERBOSITIES.items())
def test_info_logs_only_on_request(tool_runs, verbosity, info_shown):
    result = tool_runs[verbosity]
    assert result.returncode == 3  # main's return value is the exit status
    assert "warning hello" in result.stderr
    assert ("info hello" in result.stderr) == info_shown, result.stderr


# A flag each tool defines, and the group --help lists it under.
OWN_FLAG = {
    "train": ("recipe", "--epochs"),
    "evaluate": ("options", "--crops=center"),
    "export": ("output", "--output_dir=saved_models"),
    "predict": ("model", "--model_dir"),
    "convert": ("output", "--output"),
    "pretrained": ("options", "--download"),
    "verify": ("model", "--input_size=227"),
    "prepare": ("output", "--output_dir"),
    "launch": ("options", "--workers"),
    "data_service": ("options", "--dispatcher=false"),
    "benchmark": ("recipe", "--batch_size=32"),
    "input_benchmark": ("options", "--encoding=jpeg"),
    "format_benchmark": ("model", "--model_dir"),
    "explain": ("options", "--neighbours"),
}
# absl.testing's, TensorFlow's TPU and pfor flags: --helpfull lists them, --help must not.
FOREIGN_FLAGS = ("--test_srcdir", "--hbm_oom_exit", "--tt_check_filter", "--op_conversion_fallback")
# TensorFlow's load-time lines (printed twice, by two libraries) and TensorFlow's grappler's
# warning on every Keras predict of a model with a tf.cond.
NOISE = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "Could not find cuda drivers",
    "cpu_feature_guard",
    "loop_optimizer",
)
INTERNAL_NAME = re.compile(
    r"\b(training|serving|data|benchmarks|weights|paper|models|cli)\.[a-z_]+"
)


@pytest.fixture(scope="module")
def help_runs(tmp_path_factory):
    """Each console script with --help, `python -m keras_alexnet.train --help`, and predict
    on a missing model file, side by side, as from a fresh shell: {name: CompletedProcess}."""
    bin_dir = os.path.dirname(sys.executable)
    commands = {
        tool: [os.path.join(bin_dir, f"keras-alexnet-{tool.replace('_', '-')}"), "--help"]
        for tool in cli.TOOLS
    }
    commands["-m train"] = [sys.executable, "-m", "keras_alexnet.train", "--help"]
    missing = tmp_path_factory.mktemp("predict") / "missing.keras"
    commands["predict error"] = [
        sys.executable,
        "-m",
        "keras_alexnet.predict",
        f"--model={missing}",
        "image.jpg",
    ]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    results = fresh_process.run_together(*commands.values(), timeout=300, env=env)
    return dict(zip(commands, results))


def test_console_scripts_are_each_tool():
    """setup.cfg's console scripts, as pip installed them beside this Python."""
    config = configparser.ConfigParser()
    config.read(os.path.join(os.path.dirname(__file__), "..", "setup.cfg"))
    scripts = dict(
        line.replace(" ", "").split("=")
        for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    assert scripts == {
        f"keras-alexnet-{tool.replace('_', '-')}": f"keras_alexnet.{tool}:run" for tool in cli.TOOLS
    }
    bin_dir = os.path.dirname(sys.executable)
    missing = [s for s in scripts if not os.path.exists(os.path.join(bin_dir, s))]
    assert not missing, f"not installed in {bin_dir} (pip install -e . again): {missing}"


@pytest.mark.parametrize("tool", cli.TOOLS + ("-m train",))
def test_help_lists_the_tools_own_flags_in_groups(help_runs, tool):
    result = help_runs[tool]
    stdout = result.stdout
    assert result.returncode == 0 and "Traceback" not in result.stderr, (
        tool,
        result.stderr[-2000:],
    )
    module = tool.split()[-1]
    assert stdout.startswith(
        inspect.cleandoc(importlib.import_module(f"keras_alexnet.{module}").__doc__).splitlines()[0]
    )
    group, flag = OWN_FLAG[module]
    assert f"\n{group}:\n" in stdout, (tool, stdout[:2000])
    section = stdout.split(f"\n{group}:\n", 1)[1].split("\n\n")[0]
    assert f"  {flag}\n" in section, (tool, section)
    assert not [f for f in FOREIGN_FLAGS if f in stdout], (tool, stdout)
    assert not INTERNAL_NAME.search(stdout), (tool, INTERNAL_NAME.search(stdout))
    assert not [line for line in result.stderr.splitlines() if any(n in line for n in NOISE)], (
        tool,
        result.stderr,
    )


def test_a_real_error_reaches_stderr_without_the_noise(help_runs):
    result = help_runs["predict error"]
    assert result.returncode == 2
    assert "error: cannot load --model=" in result.stderr and "missing.keras" in result.stderr
    assert not [line for line in result.stderr.splitlines() if any(n in line for n in NOISE)], (
        result.stderr
    )


def test_the_filter_keeps_every_line_but_the_load_time_info_lines():
    lines = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 00:00:1796479365.708203   25213 port.cc:153] oneDNN custom operations are on.",
        b"W0000 00:00:1796479365.708203   25213 some.cc:1] a warning",
        b"E0000 00:00:1796479365.708635   25213 cuda_platform.cc:52] failed call to cuInit",
        b"I0000 00:00:1796479365.708635   25213 cudart_stub.cc:31] Could not find cuda drivers",
        b"Traceback (most recent call last):",
        b"The TensorFlow library was compiled to use AVX instructions, but these aren't available",
        b"",
        b"no newline at the end",
    ]
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()
    os.write(write_end, b"\n".join(lines))
    os.close(write_end)
    startup.forward(read_end, out_write)
    os.close(out_write)
    got = os.read(out_read, 65536).split(b"\n")
    os.close(read_end)
    os.close(out_read)
    assert got == [line for i, line in enumerate(lines) if i not in (0, 1, 4)]
