"""The package's layout, read from its source with `ast` (nothing is imported).

- No import circle between the package's modules (imports inside functions count).
- No module imports a tool (a top-level module with `if __name__ == "__main__":`).
- No module is over 500 lines.
- Only the entry points (the tools and cli.py, which runs them) read absl's `flags.FLAGS`.
- No private API of Keras or TensorFlow (`keras.src`, `tf.__internal__`).
- The subpackages import downward only, in the order `ORDER` gives (paper and models at the
  bottom, the tools on top): never a subpackage above their own, nor one beside it.

Each check lists every offender. The last tests run the checks on small packages written
for them, so that a check that finds nothing is seen to be able to find something.

How imports are counted, as Python runs them: importing `p.q.m` runs `p/__init__.py`,
then `p/q/__init__.py`, then `m`; `from p.q import n` imports the submodule `p.q.n` when
there is one (a file or a folder), else takes the name `n` from `p/q/__init__.py`. So an
import of `p.q.m` is also one of the packages `p` and `p.q`, except those that hold the
importing module itself: Python has started them before it, so importing them runs nothing
(that is how a package's `__init__.py` can gather its children's names, and a child read
the package's `__version__`).
"""

import ast
import collections
import dataclasses
import os
import textwrap

import pytest

PACKAGE_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_alexnet"
)
MAX_LINES = 500

# The package's parts from the bottom up, a level a line: a module imports its own part and
# the parts of the levels below, never one beside its own or above it. A part is a
# subpackage or a top-level module; "tools" are the top-level modules that run as scripts,
# "keras_alexnet" the package's __init__.py (the public API). paper and models are one part,
# the network and the paper it follows: the builder reads the paper's numbers
# (paper/numbers.py), the conformance report inspects the network it builds.
ORDER = (
    ("errors", "startup"),
    ("paper models",),
    ("data",),
    ("weights", "hub"),
    ("runs",),
    ("training", "serving"),
    ("benchmarks",),
    ("cli",),
    ("tools", "keras_alexnet"),
)


@dataclasses.dataclass(frozen=True)
class Import:
    """One module importing another: `line` of `path` imports `imported`.

    `through` is the module the statement names when `imported` is one of that module's
    packages, which the import runs first; None when the statement names `imported`.
    """

    importer: str
    imported: str
    path: str
    line: int
    in_function: bool
    through: str | None = None

    def where(self):
        place = f"{self.path}:{self.line}" + (", in a function" if self.in_function else "")
        if self.through:
            return f"{place}: imports {self.through}, which runs {self.imported} first"
        return f"{place}: imports {self.imported}"


class Package:
    """The modules of a package folder: their dotted names, paths and syntax trees."""

    def __init__(self, package_dir):
        self.dir = os.path.abspath(package_dir)
        self.name = os.path.basename(self.dir)
        self.root = os.path.dirname(self.dir)
        self.paths = {}  # dotted name -> path; a package's name -> its __init__.py
        for folder, dirs, files in os.walk(self.dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for file in sorted(files):
                if file.endswith(".py"):
                    parts = os.path.relpath(os.path.join(folder, file[:-3]), self.root)
                    parts = parts.split(os.sep)
                    if parts[-1] == "__init__":
                        parts = parts[:-1]
                    self.paths[".".join(parts)] = os.path.join(folder, file)
        self.trees = {}
        self.sources = {}
        for module, path in self.paths.items():
            with open(path, encoding="utf-8") as f:
                self.sources[module] = f.read()
            self.trees[module] = ast.parse(self.sources[module], filename=path)

    def is_package(self, module):
        return self.paths[module].endswith("__init__.py")

    def relpath(self, module):
        return os.path.relpath(self.paths[module], self.root)

    def ancestors(self, module):
        """The packages that hold `module`, outermost first (not `module` itself)."""
        parts = module.split(".")
        return [".".join(parts[:i]) for i in range(1, len(parts))]

    def tools(self):
        """The top-level modules that run as scripts (`if __name__ == "__main__":`)."""
        return sorted(
            module
            for module, tree in self.trees.items()
            if module.count(".") == 1 and not self.is_package(module) and _runs_as_main(tree)
        )

    def imports(self):
        """Every `Import` of one of the package's modules by another, in module order."""
        found = []
        for module in self.paths:
            for node, in_function in _import_statements(self.trees[module]):
                for named in self._named(module, node):
                    found.extend(self._imports_of(module, named, node.lineno, in_function))
        return found

    def _named(self, module, node):
        """The package modules an import statement names (submodules where they exist)."""
        if isinstance(node, ast.Import):
            return [self._nearest(alias.name) for alias in node.names if self._inside(alias.name)]
        base = node.module or ""
        if node.level:
            package = module if self.is_package(module) else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        if not self._inside(base):
            return []
        named = []
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            named.append(submodule if submodule in self.paths else self._nearest(base))
        return named

    def _inside(self, name):
        return name == self.name or name.startswith(self.name + ".")

    def _nearest(self, name):
        """`name`, or the longest of its prefixes that is a module."""
        while name not in self.paths and "." in name:
            name = name.rpartition(".")[0]
        return name

    def _imports_of(self, module, named, line, in_function):
        """The `Import`s of one statement of `module` naming `named`: `named` and the
        packages that hold it, but not `module`, nor the packages that hold `module`."""
        running = {module, *self.ancestors(module)}
        path = self.relpath(module)
        imports = [
            Import(module, package, path, line, in_function, through=named)
            for package in self.ancestors(named)
            if package not in running
        ]
        if named not in running:
            imports.append(Import(module, named, path, line, in_function))
        return imports


def _runs_as_main(tree):
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            sides = [node.test.left, *node.test.comparators]
            names = {s.id for s in sides if isinstance(s, ast.Name)}
            values = {s.value for s in sides if isinstance(s, ast.Constant)}
            if names == {"__name__"} and values == {"__main__"}:
                return True
    return False


def _import_statements(tree):
    """(statement, whether it is inside a function) for each import statement of `tree`."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            visit(child, inner or isinstance(child, ast.Lambda))

    visit(tree, False)
    return found


def find_cycles(imports):
    """The import circles: for each module that is on one, the shortest circle through it.

    Args:
        imports: `Import`s.

    Returns:
        Each circle once, as its modules in import order, the first repeated at the end and
        the smallest name first; the circles sorted.
    """
    graph = collections.defaultdict(set)
    for edge in imports:
        graph[edge.importer].add(edge.imported)
    cycles = set()
    for start in sorted(graph):
        path = _shortest_path(graph, start, start)
        if path:
            body = path[:-1]
            first = body.index(min(body))
            cycles.add(tuple(body[first:] + body[:first] + [body[first]]))
    return sorted(list(cycle) for cycle in cycles)


def _shortest_path(graph, start, goal):
    """The shortest path of one or more edges from `start` to `goal`, or None."""
    previous = {}
    queue = collections.deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, ())):
            if successor == goal:
                path = [goal, node]
                while node != start:
                    node = previous[node]
                    path.append(node)
                return path[::-1]
            if successor not in previous and successor != start:
                previous[successor] = node
                queue.append(successor)
    return None


def cycle_offences(package):
    imports = package.imports()
    offences = []
    for cycle in find_cycles(imports):
        lines = [" -> ".join(cycle)]
        for importer, imported in zip(cycle, cycle[1:]):
            edge = min(
                (e for e in imports if (e.importer, e.imported) == (importer, imported)),
                key=lambda e: (e.through is not None, e.in_function, e.line),
            )
            lines.append(f"    {edge.where()}")
        offences.append("\n".join(lines))
    return offences


def tool_import_offences(package):
    tools = set(package.tools())
    return [
        f"{edge.importer} imports the tool {edge.imported} ({edge.where()})"
        for edge in package.imports()
        if edge.imported in tools and edge.through is None and edge.importer != edge.imported
    ]


def length_offences(package, max_lines=MAX_LINES):
    return [
        f"{package.relpath(module)}: {count} lines"
        for module, count in sorted(
            ((m, len(package.sources[m].splitlines())) for m in package.paths),
            key=lambda item: -item[1],
        )
        if count > max_lines
    ]


def flags_offences(package):
    """Where a module that is not an entry point uses absl's `flags.FLAGS` (a function's
    default value excepted: a caller may pass its own `FlagValues`, and tools do)."""
    entry_points = {*package.tools(), f"{package.name}.cli"}
    offences = []
    for module, tree in package.trees.items():
        if module in entry_points:
            continue
        flags_names = _names_bound_to_absl_flags(tree)
        defaults = {
            id(default)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for default in [*node.args.defaults, *node.args.kw_defaults]
            if default is not None
        }
        for node in ast.walk(tree):
            uses = (
                isinstance(node, ast.Attribute)
                and node.attr == "FLAGS"
                and _dotted(node.value) in flags_names
                and id(node) not in defaults
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "absl.flags"
                and any(alias.name == "FLAGS" for alias in node.names)
            )
            if uses:
                offences.append((package.relpath(module), node.lineno))
    return [f"{path}:{line}: absl flags.FLAGS" for path, line in sorted(offences)]


def _names_bound_to_absl_flags(tree):
    names = {"absl.flags"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "absl":
            names.update(a.asname or a.name for a in node.names if a.name == "flags")
        elif isinstance(node, ast.Import):
            names.update(a.asname for a in node.names if a.name == "absl.flags" and a.asname)
    return names


def _dotted(node):
    """ "a.b.c" for the expression a.b.c of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        value = _dotted(node.value)
        return value and f"{value}.{node.attr}"
    return None


def private_api_offences(package):
    offences = []
    for module, tree in package.trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                names = [_dotted(node)]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offences.extend(
                (package.relpath(module), node.lineno, name) for name in names if _private(name)
            )
    return [f"{path}:{line}: {name}" for path, line, name in sorted(offences)]


def _private(name):
    """Whether a dotted name is in keras.src or tf.__internal__."""
    parts = name.split(".")
    return parts[:2] == ["keras", "src"] or (
        parts[0] in ("tf", "tensorflow") and parts[1:2] == ["__internal__"]
    )


def order_offences(package, order=ORDER):
    """Every import of a part above the importer's or beside it (`order`), and every part
    that is in no level of `order`."""
    level, part = {}, {}
    for number, parts in enumerate(order):
        for names in parts:
            for name in names.split():
                level[name], part[name] = number, names
    tools = set(package.tools())

    def part_of(module):
        if module == package.name:
            return package.name
        return "tools" if module in tools else module.split(".")[1]

    offences = []
    for module in package.paths:
        name = part_of(module)
        if name not in level:
            offences.append(f"{package.relpath(module)}: {name} is in no level of the order")
            level[name], part[name] = None, name  # named once
    for edge in package.imports():
        importer, imported = part_of(edge.importer), part_of(edge.imported)
        if edge.through or None in (level[importer], level[imported]):
            continue  # a package the statement's module runs first: that module's part
        if part[importer] != part[imported] and level[imported] >= level[importer]:
            where = "above" if level[imported] > level[importer] else "beside"
            offences.append(f"{edge.where()} ({importer} imports {imported}, {where} it)")
    return offences


def _fail_if(offences, what):
    if offences:
        pytest.fail(f"{what} ({len(offences)}):\n" + "\n".join(offences), pytrace=False)


# The package.


def test_no_import_cycles():
    _fail_if(cycle_offences(Package(PACKAGE_DIR)), "Import circles between package modules")


def test_no_module_imports_a_tool():
    package = Package(PACKAGE_DIR)
    # The tools the issue names, so that a tool that stopped being found is noticed.
    assert {
        f"keras_alexnet.{tool}"
        for tool in (
            "train evaluate export predict convert verify prepare launch data_service "
            "benchmark input_benchmark format_benchmark"
        ).split()
    } <= set(package.tools()), package.tools()
    _fail_if(tool_import_offences(package), "Package modules that import a tool")


def test_no_module_is_over_500_lines():
    _fail_if(length_offences(Package(PACKAGE_DIR)), f"Modules over {MAX_LINES} lines")


def test_only_entry_points_read_absl_flags():
    _fail_if(flags_offences(Package(PACKAGE_DIR)), "Library modules that use absl flags.FLAGS")


def test_no_private_keras_or_tensorflow_api():
    _fail_if(private_api_offences(Package(PACKAGE_DIR)), "Private Keras or TensorFlow APIs")


def test_subpackages_import_only_downward():
    _fail_if(order_offences(Package(PACKAGE_DIR)), "Imports against the order of the parts")


# The checks, on packages written for them.


def write_package(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return Package(root / "pkg")


def test_the_checks_find_a_circle_a_tool_import_and_a_long_module(tmp_path):
    package = write_package(
        tmp_path,
        {
            # A package gathering its children's names, which read its version: no circle.
            "pkg/__init__.py": "from pkg.a import thing\n__version__ = '1'\n",
            "pkg/a.py": "import pkg\nfrom pkg import b\nthing = pkg\n",
            "pkg/b.py": "def f():\n    from pkg.a import thing\n    return thing\n",
            "pkg/tool.py": "def main():\n    pass\n\n\nif __name__ == '__main__':\n    main()\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from .. import tool\nfrom . import d\n",
            "pkg/sub/d.py": "x = 1\n" * 501,
            "pkg/sub/e.py": "import pkg.a\nfrom pkg.sub.d import x\n",
        },
    )
    assert package.tools() == ["pkg.tool"]
    assert cycle_offences(package) == [
        "pkg.a -> pkg.b -> pkg.a\n"
        "    pkg/a.py:2: imports pkg.b\n"
        "    pkg/b.py:2, in a function: imports pkg.a"
    ]
    assert tool_import_offences(package) == [
        "pkg.sub.c imports the tool pkg.tool (pkg/sub/c.py:1: imports pkg.tool)"
    ]
    assert length_offences(package) == ["pkg/sub/d.py: 501 lines"]
    assert flags_offences(package) == [] and private_api_offences(package) == []


def test_importing_a_module_runs_its_packages_first(tmp_path):
    # a imports pkg.sub.c, which runs pkg/sub/__init__.py first; that imports e, which
    # imports a: a circle, though no statement names pkg.sub.
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.sub import c\n",
            "pkg/sub/__init__.py": "from pkg.sub.e import y\n",
            "pkg/sub/c.py": "",
            "pkg/sub/e.py": "from pkg import a\ny = a\n",
        },
    )
    assert cycle_offences(package) == [
        "pkg.a -> pkg.sub -> pkg.sub.e -> pkg.a\n"
        "    pkg/a.py:1: imports pkg.sub.c, which runs pkg.sub first\n"
        "    pkg/sub/__init__.py:1: imports pkg.sub.e\n"
        "    pkg/sub/e.py:1: imports pkg.a"
    ]


def test_the_checks_find_flags_and_private_apis(tmp_path):
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/cli.py": "from absl import flags\nFLAGS = flags.FLAGS\n",
            "pkg/lib.py": (
                "import keras\nimport tensorflow as tf\nfrom absl import flags\n"
                "def define(flag_values=flags.FLAGS):\n    pass\n"
                "def read():\n    return flags.FLAGS.model_dir\n"
                "x = keras.src.layers\ny = tf.__internal__.nest\n"
                "from keras.src import ops\n"
            ),
        },
    )
    assert flags_offences(package) == ["pkg/lib.py:7: absl flags.FLAGS"]
    assert private_api_offences(package) == [
        "pkg/lib.py:8: keras.src",
        "pkg/lib.py:9: tf.__internal__",
        "pkg/lib.py:10: keras.src",
    ]


def test_the_order_check_finds_imports_up_and_beside_and_a_part_out_of_order(tmp_path):
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.top import t\n",
            "pkg/base.py": "",
            "pkg/low/__init__.py": "",
            "pkg/low/a.py": "from pkg import base\ndef f():\n    from pkg.top import t\n",
            "pkg/low/c.py": "from pkg.twin import b\n",
            "pkg/twin/__init__.py": "",
            "pkg/twin/b.py": "from pkg.low import a\n",
            "pkg/left/__init__.py": "",
            "pkg/left/d.py": "from pkg.low import a\nfrom pkg.right.e import x\n",
            "pkg/right/__init__.py": "",
            "pkg/right/e.py": "import pkg.low.a\nx = 1\n",
            "pkg/top/__init__.py": "",
            "pkg/top/t.py": "from pkg.left import d\nfrom pkg import right\n",
            "pkg/stray/__init__.py": "",
            "pkg/tool.py": "from pkg.top import t\n\nif __name__ == '__main__':\n    t()\n",
        },
    )
    order = (("base",), ("low twin",), ("left", "right"), ("top",), ("tools", "pkg"))
    assert order_offences(package, order) == [
        "pkg/stray/__init__.py: stray is in no level of the order",
        "pkg/left/d.py:2: imports pkg.right.e (left imports right, beside it)",
        "pkg/low/a.py:3, in a function: imports pkg.top.t (low imports top, above it)",
    ]
    # The same package in an order without those imports: nothing to name.
    fixed = (("base",), ("low twin",), ("right",), ("left",), ("top",), ("stray", "tools", "pkg"))
    assert order_offences(package, fixed) == [
        "pkg/low/a.py:3, in a function: imports pkg.top.t (low imports top, above it)"
    ]
