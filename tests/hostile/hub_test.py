"""A folder that looks like a KerasHub preset but is not one, given to verify: one line,
exit 2, no traceback."""

import pytest
from harness import assert_refused
from harness import run_tool

pytest.importorskip("keras_hub", reason="the keras_hub extra (pip install keras-hub) is missing")


def test_verify_refuses_a_broken_preset_folder(tmp_path):
    folder = tmp_path / "broken_preset"
    folder.mkdir()
    (folder / "config.json").write_text('{"not": "a keras config"}')
    (folder / "task.json").write_text("{")
    result = run_tool("verify", f"--model={folder}")
    assert_refused(result, str(folder), "not a readable KerasHub preset")
