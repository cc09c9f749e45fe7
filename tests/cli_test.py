"""The entry points' shared runner: TensorFlow's INFO lines stay off the console."""

import configparser
import os
import subprocess
import sys
import textwrap

import fresh_process
import pytest

from keras_alexnet import cli

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


def test_console_scripts_run_each_tool():
    """setup.cfg's console scripts, as pip installed them beside this Python, print each
    tool's flags (absl exits with status 1 after --helpfull, as `python -m` does)."""
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
    running = {
        tool: subprocess.Popen(
            [os.path.join(bin_dir, f"keras-alexnet-{tool.replace('_', '-')}"), "--helpfull"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tool in cli.TOOLS
    }
    # A flag each tool defines, listed under the module that defines it.
    own_flag = {
        "train": ("training.config", "--epochs"),
        "evaluate": ("evaluate", "--crops"),
        "export": ("export", "--output_dir"),
        "predict": ("predict", "--model_dir"),
        "convert": ("convert", "--output:"),
        "pretrained": ("pretrained", "--download"),
        "verify": ("verify", "--format"),
        "prepare": ("prepare", "--output_dir"),
        "launch": ("launch", "--workers"),
        "data_service": ("data_service", "--dispatcher"),
        "benchmark": ("benchmark", "--batch_size"),
        "input_benchmark": ("input_benchmark", "--encoding"),
        "format_benchmark": ("format_benchmark", "--model_dir"),
    }
    for tool, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 1 and "Traceback" not in stderr, (tool, stderr[-2000:])
        module, flag = own_flag[tool]
        assert f"\nkeras_alexnet.{module}:\n" in stdout, (tool, stdout[:1000])
        section = stdout.split(f"\nkeras_alexnet.{module}:\n", 1)[1]
        assert flag in section.split("\n\n")[0], (tool, section[:500])
