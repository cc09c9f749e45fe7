"""What every `python -m keras_alexnet.<tool>` entry point shares.

`pip install` puts a `keras-alexnet-<tool>` command beside `python -m keras_alexnet.<tool>`
for each of `TOOLS` (setup.cfg's console_scripts); both call the tool module's `run`.
"""

import inspect
import sys
import textwrap

from absl import app
from absl import flags
from absl import logging

from keras_alexnet import errors

# The flags that `define_model_flags` defines are the calling tool's: its --help lists them.
flags.disclaim_key_flags()


def run(main, define_flags=None, groups=None):
    """Defines the tool's flags and runs `main` under `absl.app`.

    absl logs at INFO under `app.run`, which fills the console with TensorFlow's own
    INFO lines (one for every checkpoint saved); the tools log at WARNING unless
    `--verbosity` is given. `--help` prints `tool_help` and exits 0 (absl's own prints
    the module's docstring and no flag); `--helpfull` stays absl's. Input the package
    cannot use (`errors.InputError`) is printed as one line, `error: ...`, with no
    traceback, and the tool exits 2. A flag absl cannot parse, or a usage error the
    tool raises (`app.UsageError`), is printed as `error: ...` and a pointer to
    `--help`, and the tool exits 1 (absl's own point to --helpshort and --helpfull, or
    print the docstring and absl's listing of the flags).

    Args:
        main: the tool's main(argv).
        define_flags: defines the tool's flags.
        groups: {flag name: group} for this tool, over `FLAG_GROUPS`.
    """
    if define_flags is not None:
        define_flags()
    if _asks_for_help(sys.argv[1:]):
        print(tool_help(sys.modules[main.__module__].__doc__, groups), end="")
        sys.exit(0)

    def quiet_main(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            if "max_image_pixels" in flags.FLAGS:
                # Imported here: the tools without the flag (the launcher) never load TensorFlow.
                from keras_alexnet.data import image_headers

                image_headers.set_max_pixels(flags.FLAGS.max_image_pixels)
            return main(argv)
        except errors.InputError as error:
            print(f"error: {one_line(error)}", file=sys.stderr)
            return errors.EXIT_CODE
        except app.UsageError as error:
            _print_usage_error(error)
            return error.exitcode

    app.run(quiet_main, flags_parser=_parse_flags)


# What follows a usage error: absl's own line points to --helpshort and --helpfull.
SEE_HELP = "Pass --help to see the tool's flags."


def _parse_flags(argv):
    """absl's parsing of the command line, a flag it cannot parse printed as
    `_print_usage_error` prints it (exit status 1, as absl's)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _print_usage_error(error)
        sys.exit(1)


def _print_usage_error(error):
    print(f"error: {one_line(error)}", file=sys.stderr)
    print(SEE_HELP, file=sys.stderr, flush=True)


def one_line(error):
    """An error's message on one line: line breaks (from a file name or a library's
    message) shown as spaces."""
    return " ".join(str(error).split())


# The tools, each `python -m keras_alexnet.<tool>` and the console script
# `keras-alexnet-<tool>` (setup.cfg), which calls the tool module's `run`.
TOOLS = (
    "train",
    "evaluate",
    "export",
    "predict",
    "convert",
    "pretrained",
    "verify",
    "prepare",
    "launch",
    "data_service",
    "benchmark",
    "input_benchmark",
    "format_benchmark",
    "explain",
)


def define_model_flags(model_dir_help, precisions):
    """Defines the flags of every tool that works on a model: --model or --model_dir.

    --model (a .keras file, or an exported model's folder), --model_dir (a training run),
    exactly one of them; --checkpoint (default: the run's latest) and --mixed_precision.

    Args:
        model_dir_help: --model_dir's help, saying what the tool does with the run.
        precisions: --mixed_precision's choices, `model.PRECISIONS` (passed in: this module
            is imported by tools that never load Keras, such as the launcher).
    """
    flags.DEFINE_string(
        "model",
        None,
        "A .keras model file (from convert, export or model.save), an exported model's "
        "folder, or a name of pretrained weights (bvlc_alexnet, imagenet, "
        "torchvision_alexnet, IMAGENET1K_V1; fetched and cached on first use, see "
        "keras_alexnet.pretrained); its preprocessing and class names come with it. "
        "Or --model_dir.",
    )
    flags.DEFINE_string("model_dir", None, model_dir_help + " Or --model.")
    flags.DEFINE_string("checkpoint", None, "With --model_dir: a checkpoint (default: the latest).")
    flags.DEFINE_enum("mixed_precision", "none", list(precisions), "Compute dtype.")
    flags.mark_flags_as_mutual_exclusive(["model", "model_dir"], required=True)


def define_image_flags():
    """Defines --max_image_pixels, the largest image the tool decodes (`run` applies it)."""
    flags.DEFINE_integer(
        "max_image_pixels",
        89_478_485,
        "The largest image (width x height, read from the file's header before it is "
        "decoded) that is read; a larger one is refused as a bad image. The default is "
        "Pillow's decompression-bomb limit; an image at it takes about 2 GB to decode.",
        lower_bound=1,
    )


# The groups --help lists a tool's flags in, in this order, as the docs group them; a flag
# in none of them is listed under "options". A tool may place a flag otherwise (`run`).
FLAG_GROUPS = {
    "model": (
        "model",
        "model_dir",
        "checkpoint",
        "variant",
        "num_classes",
        "input_size",
        "implementation",
    ),
    "data": (
        "dataset",
        "data_dir",
        "manual_dir",
        "split",
        "validation_split",
        "on_bad_image",
        "max_image_pixels",
        "stats_images",
        "data_service",
    ),
    "recipe": (
        "recipe",
        "epochs",
        "batch_size",
        "optimizer",
        "learning_rate",
        "lr_schedule",
        "lr_patience",
        "lr_max_reductions",
        "momentum",
        "weight_decay",
        "dropout",
        "init",
        "input_scale",
        "seed",
    ),
    "fine-tuning": ("init_from", "freeze"),
    "run": (
        "checkpoint_every",
        "log_every",
        "profile_steps",
        "max_steps",
        "deterministic",
        "input_timeout",
        "projector_images",
    ),
    "machine": (
        "strategy",
        "cpu_replicas",
        "worker_timeout",
        "mixed_precision",
        "dtype_policy",
        "jit_compile",
        "threads",
    ),
    "output": ("output", "output_dir", "name", "format", "quantize", "json"),
}
OTHER_GROUP = "options"
_HELP_ARGS = {"--help", "-help", "-h", "--h", "-?", "--helpshort", "-helpshort", "--help=true"}


def _asks_for_help(args):
    """Whether the command line asks for --help (before any "--": launch passes on what
    follows it)."""
    for arg in args:
        if arg == "--":
            return False
        if arg in _HELP_ARGS:
            return True
    return False


def tool_help(doc, groups=None):
    """What --help prints: the docstring's description for users, then the tool's flags.

    The description is the docstring up to its first paragraph of prose after the
    summary line (indented usage lines included); the tool's flags are those defined by
    the package's modules (not absl's, TensorFlow's or absl.testing's), grouped by
    `FLAG_GROUPS` and `groups`, each with its default.

    Args:
        doc: the tool module's docstring.
        groups: {flag name: group} overriding `FLAG_GROUPS`.

    Returns:
        The text, ending with a newline.
    """
    group_of = {name: group for group, names in FLAG_GROUPS.items() for name in names}
    group_of.update(groups or {})
    order = list(FLAG_GROUPS) + [g for g in (groups or {}).values() if g not in FLAG_GROUPS]
    listed = {}
    for flag in _own_flags():
        listed.setdefault(group_of.get(flag.name, OTHER_GROUP), []).append(flag)
    lines = [_description(doc or ""), ""]
    for group in order + [OTHER_GROUP]:
        if group not in listed:
            continue
        lines.append(f"{group}:")
        for flag in listed[group]:
            lines.append(f"  --{flag.name}{_default(flag)}")
            lines.extend(
                textwrap.wrap(flag.help, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
            )
        lines.append("")
    lines.append("--verbosity=0 shows TensorFlow's INFO lines too.")
    lines.append("--helpfull lists every flag, absl's and TensorFlow's included.")
    return "\n".join(lines) + "\n"


def _own_flags():
    """The flags the package's modules defined, in the order they were defined."""
    seen = {}
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        if "keras_alexnet" not in module:
            continue
        for flag in module_flags:
            seen.setdefault(flag.name, flag)
    return list(seen.values())


def _description(doc):
    """The docstring's summary line, usage lines and first paragraph of prose."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    shown = paragraphs[:1]
    for paragraph in paragraphs[1:]:
        shown.append(paragraph)
        if not paragraph.startswith(" "):
            break
    return "\n\n".join(shown)


def _default(flag):
    """ "=DEFAULT" for a flag with a default, "" for none."""
    if flag.default is None or flag.default == []:
        return ""
    if isinstance(flag.default, bool):
        return "=" + str(flag.default).lower()
    if isinstance(flag.default, (list, tuple)):
        return "=" + ",".join(map(str, flag.default))
    return f"={flag.default}"
