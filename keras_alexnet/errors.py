"""The error a tool reports in one line: input the package cannot use.

Files, folders, URLs and network peers come from outside the package and may be broken
or hostile. Whatever reads them raises `InputError` with one line that names the thing
and what is wrong with it; every tool prints that line as `error: ...` and exits 2, with
no traceback (`cli.run`).
"""

import os


class InputError(ValueError):
    """A file, folder, URL or peer the package cannot use.

    Its message is one line: the thing's name (a path, a URL, an address) and what is
    wrong with it. A `ValueError`, so code that catches those still catches it.
    """


EXIT_CODE = 2


def printable(path):
    """A file name as it can be printed: bytes that are not UTF-8 (Python's surrogate
    escapes) shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
