"""The entry points' shared runner: TensorFlow's INFO lines stay off the console."""

import subprocess
import sys
import textwrap

import pytest

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


@pytest.mark.parametrize("verbosity, info_shown", [(None, False), ("0", True), ("-1", False)])
def test_info_logs_only_on_request(tmp_path, verbosity, info_shown):
    script = tmp_path / "tool.py"
    script.write_text(SCRIPT)
    args = [sys.executable, str(script), "--word=hello"]
    if verbosity is not None:
        args.append(f"--verbosity={verbosity}")
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3  # main's return value is the exit status
    assert "warning hello" in result.stderr
    assert ("info hello" in result.stderr) == info_shown, result.stderr
