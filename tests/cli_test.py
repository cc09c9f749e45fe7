"""The entry points' shared runner: TensorFlow's INFO lines stay off the console, --help
lists each tool's own flags, a bad flag points to --help, and TensorFlow's load-time lines
(and on a machine without a GPU driver, its failed cuInit) are left out of stderr."""

import configparser
import ctypes.util
import importlib
import inspect
import os
import re
import socket
import sys
import textwrap

import fresh_process
import image_data
import pytest
import tensorflow as tf
import tiny

import keras_alexnet
from keras_alexnet import cli
from keras_alexnet import pretrained
from keras_alexnet import startup
from keras_alexnet.models import alexnet
from keras_alexnet.weights import catalog

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
    results = fresh_process.run_together(*commands.values(), timeout=300, env=env, at_once=4)
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
    assert forwarded(lines) == [line for i, line in enumerate(lines) if i not in (0, 1, 4)]


def forwarded(lines, *noise):
    """What `startup.forward` passes on of `lines`."""
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()
    os.write(write_end, b"\n".join(lines))
    os.close(write_end)
    startup.forward(read_end, out_write, *noise)
    os.close(out_write)
    got = os.read(out_read, 65536).split(b"\n")
    os.close(read_end)
    os.close(out_read)
    return got


# ------------------------------------------------------------------------------------------
# A quiet start: every tool, on a small task, prints to stderr only what it says itself.
# ------------------------------------------------------------------------------------------

# What TensorFlow's CUDA platform logs, the first time it looks for devices, where the
# driver's libcuda.so.1 cannot be loaded (303); the time and thread vary.
NO_DRIVER_LINE = re.compile(
    r"E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit: INTERNAL: CUDA "
    r"error: Failed call to cuInit: UNKNOWN ERROR \(303\)"
)
# A line of absl's C++ or Python logging: a tool's own messages are none of these.
LOG_LINE = re.compile(r"(\[worker \d+\] )?[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]")


def test_the_filter_leaves_out_the_failed_cuinit_only_where_there_is_no_driver():
    lines = [
        b"E0000 00:00:1796678458.217485    6556 cuda_platform.cc:52] failed call to cuInit: "
        b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        b"E0000 00:00:1796678458.217485    6556 cuda_platform.cc:52] failed call to cuInit: "
        b"INTERNAL: CUDA error: Failed call to cuInit: CUDA_ERROR_NO_DEVICE: no CUDA-capable "
        b"device is detected",
        b"E0000 00:00:1796678458.217485    6556 some.cc:1] UNKNOWN ERROR (303)",
        b"I0000 00:00:1796479365.708203   25213 port.cc:153] oneDNN custom operations are on.",
        b"error: a tool's own error",
    ]
    assert NO_DRIVER_LINE.fullmatch(lines[0].decode())
    assert forwarded(lines, startup.NOISE_WITHOUT_DRIVER) == lines[1:3] + lines[4:]
    assert forwarded(lines) == lines[:3] + lines[4:]  # a driver is present: the line stays


# Each tool on a small task that has TensorFlow look for its devices (on 0.1.0 the failed
# cuInit came then, with absl's logging level set), the costliest first: {name: (tool, its
# arguments)}; the arguments name the "{...}" of `started`. The benchmarks refuse a value
# (a usage error) rather than measure for seconds.
TASKS = {
    "input_benchmark": (
        "input_benchmark",
        "--data_dir={images} --batch_size=2 --epochs=1 --repeats=1",
    ),
    "evaluate": ("evaluate", "--model={model} --dataset=folder --data_dir={images}"),
    "prepare": ("prepare", "--dataset=folder --data_dir={images} --output_dir={out}/prepared"),
    "predict": ("predict", "--model={model} {image}"),
    "export": ("export", "--model={model} --output_dir={out}/export"),
    "explain": ("explain", "--model={model} --output_dir={out}/explained {image}"),
    "verify": ("verify", "--variant=tiny"),
    "pretrained": ("pretrained", "--list"),
    "train": ("train", "--model_dir={run} --dataset=folder --data_dir={missing} --variant=tiny"),
    "convert": ("convert", "{missing}.caffemodel --output={out}/c.keras"),
    "launch": ("launch", "--workers=1 --timeout=0 -- --epochs=1"),
    "data_service": ("data_service", "--dispatcher --port={taken_port}"),
    "benchmark": ("benchmark", "--variant=tiny --implementation=no_such_implementation"),
    "format_benchmark": ("format_benchmark", "--model_dir={run} --version={missing}"),
    # Not a tool's task: a flag no tool has.
    "unknown flag": ("verify", "--variant=tiny --no_such_flag=1"),
}
# The tasks a tool refuses: its stderr is the error alone (and after a usage error, where
# to find the flags).
REFUSED = {"train", "convert", "launch", "data_service", "benchmark", "format_benchmark"}
# With TensorFlow's C++ start-up lines left out but a GPU driver shown (a file that exists
# named as the driver's), TensorFlow looks for devices: `python -c DRIVER_SCRIPT STARTUP FILE`.
DRIVER_SCRIPT = textwrap.dedent(
    """
    import importlib.util
    import os
    import sys

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # as the package sets it
    spec = importlib.util.spec_from_file_location("startup", sys.argv[1])
    startup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup)
    startup.DRIVER_FILES = (sys.argv[2],)
    startup.import_keras()
    import tensorflow as tf

    print("devices", len(tf.config.list_physical_devices()), flush=True)
    """
)


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """Each of `TASKS`, and DRIVER_SCRIPT, run as from a fresh shell, three at a time:
    {name: CompletedProcess}, and "keras_home": the tasks' KERAS_HOME."""
    base = tmp_path_factory.mktemp("started")
    tiny.register()
    names = {
        "model": base / "tiny.keras",
        "images": image_data.make_folder(base / "images", train_per_class=2, val_per_class=1),
        "run": base / "run",
        "missing": base / "missing",
        "out": base / "out",
        "keras_home": base / "keras_home",
    }
    names["image"] = os.path.join(names["images"], "validation", "cat", "000.jpg")
    model = keras_alexnet.AlexNet(
        3, variant="tiny", input_offset=-120.0, class_names=["cat", "dog", "fox"]
    )
    model.save(names["model"])
    driver = base / "nvidiactl"
    driver.touch()
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["KERAS_HOME"] = str(names["keras_home"])
    with socket.socket() as taken:  # a dispatcher's port that another server holds
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        names["taken_port"] = taken.getsockname()[1]
        commands = [
            fresh_process.command(tool, *args.format(**names).split())
            for tool, args in TASKS.values()
        ]
        commands.append([sys.executable, "-c", DRIVER_SCRIPT, startup.__file__, driver])
        results = fresh_process.run_together(*commands, timeout=600, env=env, at_once=3)
    return dict(zip([*TASKS, "driver"], results)) | {"keras_home": str(names["keras_home"])}


def test_every_tool_has_a_task():
    assert {tool for tool, _ in TASKS.values()} == set(cli.TOOLS)


@pytest.mark.parametrize("name", [name for name in TASKS if name in cli.TOOLS])
def test_a_tool_prints_only_what_it_says_itself(started, name):
    result = started[name]
    stderr = result.stderr.splitlines()
    assert not [line for line in stderr if NO_DRIVER_LINE.search(line)], (name, result.stderr)
    assert not [line for line in stderr if LOG_LINE.match(line)], (name, result.stderr)
    if name in REFUSED:  # the error reaches the user, on its own
        assert result.returncode != 0 and stderr[0].startswith("error: "), (name, result.stderr)
        assert stderr[1:] in ([], [cli.SEE_HELP]), (name, result.stderr)
    else:
        assert result.returncode == 0 and result.stdout, (name, result.stderr[-3000:])
        assert result.stderr == "", (name, result.stderr)


def test_a_failing_driver_still_shows(started):
    """Where a GPU driver shows (here: `startup.DRIVER_FILES` names a file that exists), the
    failed cuInit reaches stderr when TensorFlow looks for devices, its load-time lines
    still left out."""
    if not tf.sysconfig.get_build_info().get("is_cuda_build"):
        pytest.skip("this TensorFlow has no CUDA platform: it never calls cuInit")
    if ctypes.util.find_library("cuda") or startup.gpu_driver_present():
        pytest.skip("this machine has a GPU driver: cuInit does not fail with 303")
    result = started["driver"]
    assert result.returncode == 0 and "devices" in result.stdout, result.stderr
    lines = result.stderr.splitlines()
    assert len([line for line in lines if NO_DRIVER_LINE.fullmatch(line)]) == 1, lines
    assert not [line for line in lines if any(n in line for n in NOISE)], lines


def test_an_unknown_flag_points_to_help(started):
    result = started["unknown flag"]
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: Unknown command line flag 'no_such_flag'",
        cli.SEE_HELP,
    ]
    assert "--help" in cli.SEE_HELP and "helpshort" not in cli.SEE_HELP


def test_a_usage_error_points_to_help(started):
    result = started["benchmark"]
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: --implementation must be from {alexnet.IMPLEMENTATIONS}. "
        "Received: 'no_such_implementation'",
        cli.SEE_HELP,
    ]
    assert not result.stdout


def test_pretrained_list_lists_as_the_bare_command(started, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", started["keras_home"])
    listed = "".join("\n".join(pretrained.describe(e)) + "\n" for e in catalog.ENTRIES.values())
    assert started["pretrained"].stdout.endswith(listed)
    assert started["pretrained"].stdout.startswith("Pretrained weights, cached in ")
