"""What a SavedModel folder's graph runs, read before it is loaded.

A SavedModel is a program: its signatures, and the functions TensorFlow runs while
loading it, may hold any TensorFlow operation, such as `WriteFile`, `ReadFile` or
`PyFunc` (which runs Python). `tf.saved_model.load` and a call of a signature run
them. So before a tool loads a SavedModel folder, `check` reads its `saved_model.pb` as a
protocol buffer (nothing of it runs): every node of each graph and every function of the
graph's function library, and refuses a graph that uses an operation this package's own
exports never use, unless the user trusts the folder (`--trust_model`).

An export holds three kinds of code, each with its own list below:
  - the program: the signatures and every function they (or anything else but the saver)
    call, the graph's own nodes, and any function nothing calls;
  - the saver's "save" and "restore" functions, which the graph's `saver_def` names
    (`tf.saved_model.load` restores variables with its own code; TensorFlow Serving runs
    the restore function). They read and write checkpoint files (`RestoreV2`, `SaveV2`,
    `MergeV2Checkpoints`), which are allowed there and nowhere else.
Code run from several kinds must fit every one of their lists: the saver's functions
count as the program too when a signature, a collection (TensorFlow 1's main op) or
another node runs them, and so does any function the loaded object makes callable.
"""

import os

from tensorflow.core.protobuf import saved_model_pb2

from keras_alexnet import errors

GRAPH_FILE = "saved_model.pb"
# The largest saved_model.pb read: an export of the paper's network writes under 1 MB (its
# weights and its mean image are in variables/; exports of 0.1.0 held the mean image, 0.8
# MB, as a constant of the graph).
# TensorFlow's own limit for the file is 2 GB, which costs several times that to parse.
MAX_GRAPH_BYTES = 64 * 2**20

PROGRAM, SAVE, RESTORE = "program", "save", "restore"

# The operations of this package's own exports, by kind of code. Derived by exporting
# (serving.saved_model.export, as `python -m keras_alexnet.export` does) every variant
# (paper, caffe, one_weird_trick) with each grouped-convolution implementation ("towers",
# "native"), with and without an input normalisation and a mean image, under each
# --mixed_precision (none, float16, bfloat16), the 0.1.0 files of tests/testdata/v0_1_0
# (its model.keras and its training run), both signatures (serving_default,
# predict_pixels), and collecting `op_types` of each; tests/serving/graph_ops_test.py
# derives them again from fresh exports and fails when they differ.
ALLOWED = {
    PROGRAM: frozenset(
        """
        Abs AddV2 All Assert BiasAdd BitwiseAnd BitwiseOr Cast ConcatV2 Const Conv2D
        DecodeAndCropJpeg DecodeImage DecodeRaw EnsureShape Equal ExpandDims
        ExtractJpegShape Fill FloorDiv FloorMod GatherV2 Greater GreaterEqual Identity
        If LRN LeftShift Less LessEqual LogicalAnd LogicalNot LogicalOr MatMul MaxPool
        Maximum Minimum Mul Neg NoOp Pack Pad PartitionedCall Placeholder Range
        ReadVariableOp RealDiv ReduceJoin Relu Reshape ResizeBilinear ScaleAndTranslate
        SelectV2 Shape Slice Softmax Split Squeeze StatefulPartitionedCall StatelessIf
        StatelessWhile StridedSlice StringFormat StringJoin StringLength Sub Substr Sum
        TensorListFromTensor TensorListGetItem TensorListReserve TensorListSetItem
        TensorListStack TopKV2 VarHandleOp While
        """.split()
    ),
    SAVE: frozenset(
        """
        Const DisableCopyOnRead Identity MergeV2Checkpoints NoOp Pack ReadVariableOp SaveV2
        Select ShardedFilename StatefulPartitionedCall StaticRegexFullMatch StringJoin
        """.split()
    ),
    RESTORE: frozenset(
        """
        AssignVariableOp Const Identity NoOp RestoreV2 StatefulPartitionedCall
        """.split()
    ),
}


def read_graph(folder):
    """The `SavedModel` protocol buffer of a folder's saved_model.pb, parsed, not run.

    Raises:
        errors.InputError: no saved_model.pb, one over `MAX_GRAPH_BYTES`, or one that is
            not a SavedModel.
    """
    path = os.path.join(folder, GRAPH_FILE)
    try:
        size = os.path.getsize(path)
        if size > MAX_GRAPH_BYTES:
            raise errors.InputError(
                f"{path}: {size:,} bytes, over the {MAX_GRAPH_BYTES:,} bytes a SavedModel "
                "graph of this package's exports stays far below; not read"
            )
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise errors.InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(data)
    except Exception as error:  # the protobuf runtime's DecodeError, or a recursion limit
        raise errors.InputError(f"{path}: not a SavedModel graph ({error})") from None
    if not proto.meta_graphs:
        raise errors.InputError(f"{path}: not a SavedModel graph (it holds no graph)")
    return proto


def op_types(proto):
    """{kind: the operation types its code uses} for a parsed SavedModel, over every
    graph it holds: PROGRAM, SAVE and RESTORE (see the module's docstring)."""
    found = {PROGRAM: set(), SAVE: set(), RESTORE: set()}
    for meta_graph in proto.meta_graphs:
        for kind, ops in _graph_op_types(meta_graph).items():
            found[kind] |= ops
    return found


def _graph_op_types(meta_graph):
    graph = meta_graph.graph_def
    functions = {f.signature.name: f for f in graph.library.function}
    saver = {
        _node_name(meta_graph.saver_def.save_tensor_name): SAVE,
        _node_name(meta_graph.saver_def.restore_op_name): RESTORE,
    }
    saver.pop("", None)
    program = _program_nodes(meta_graph, saver)
    found = {PROGRAM: set(), SAVE: set(), RESTORE: set()}
    kinds = {}  # function name -> the kinds of code that call it
    for node in graph.node:
        node_kinds = {saver[node.name]} if node.name in saver else set()
        if node.name in program:
            node_kinds.add(PROGRAM)
        for kind in node_kinds:
            found[kind].add(node.op)
            _mark(node, kind, functions, kinds)
    # What the Python loader makes callable (the signatures among them), and gradients.
    roots = list(meta_graph.object_graph_def.concrete_functions)
    roots += [gradient.gradient_func for gradient in graph.library.gradient]
    roots += [name for name in functions if name not in kinds]  # called by nothing
    for name in roots:
        _reach(name, PROGRAM, functions, kinds)
    for name, function in functions.items():
        for kind in kinds[name]:
            found[kind].update(node.op for node in function.node_def if node.op not in functions)
    return found


def _program_nodes(meta_graph, saver):
    """The names of the graph's nodes that run as the program: every node but the saver's
    two, and whatever a node, a signature or a collection (TensorFlow 1's init and main
    ops) names, with the nodes they take input from."""
    pending = [node.name for node in meta_graph.graph_def.node if node.name not in saver]
    for signature in meta_graph.signature_def.values():
        for info in (*signature.inputs.values(), *signature.outputs.values()):
            pending.extend(_tensor_names(info))
    for collection in meta_graph.collection_def.values():
        pending.extend(collection.node_list.value)
        pending.extend(v.decode("utf-8", "replace") for v in collection.bytes_list.value)
    inputs = {node.name: node.input for node in meta_graph.graph_def.node}
    program = set()
    while pending:
        name = _node_name(pending.pop())
        if name in program:
            continue
        program.add(name)
        pending.extend(inputs.get(name, ()))
    return program


def _tensor_names(info):
    """The tensor names a signature's `TensorInfo` refers to (dense, sparse or composite)."""
    yield info.name
    sparse = info.coo_sparse
    yield from (sparse.values_tensor_name, sparse.indices_tensor_name)
    yield sparse.dense_shape_tensor_name
    for component in info.composite_tensor.components:
        yield from _tensor_names(component)


def _node_name(tensor_name):
    return tensor_name.split(":")[0].lstrip("^")


def _called(node, functions):
    """The library functions a node calls: as its operation, or in its attributes (the
    f of a call, the branches of If, the body of While, ...)."""
    if node.op in functions:
        yield node.op
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        yield from (f.name for f in value.list.func)


def _mark(node, kind, functions, kinds):
    for name in _called(node, functions):
        _reach(name, kind, functions, kinds)


def _reach(name, kind, functions, kinds):
    """Marks `name`, and every function it calls, as called by `kind` (iteratively: a
    library can nest deeper than Python's recursion limit)."""
    pending = [name]
    while pending:
        name = pending.pop()
        if name not in functions or kind in kinds.setdefault(name, set()):
            continue
        kinds[name].add(kind)
        for node in functions[name].node_def:
            pending.extend(_called(node, functions))


def foreign_ops(folder):
    """The operation types of a SavedModel folder that this package's exports never use
    where it uses them, sorted; [] for a graph of known operations only.

    Raises:
        errors.InputError: a saved_model.pb that cannot be read (`read_graph`).
    """
    found = op_types(read_graph(folder))
    return sorted(set().union(*(ops - ALLOWED[kind] for kind, ops in found.items())))


def check(folder, trust=False):
    """Refuses a SavedModel folder whose graph uses operations outside `ALLOWED`, before
    anything of it runs; with trust, nothing is checked (TensorFlow loads it as it is).

    Raises:
        errors.InputError: one line naming the folder and the foreign operations, or a
            saved_model.pb that cannot be read.
    """
    if trust:
        return
    foreign = foreign_ops(folder)
    if foreign:
        raise errors.InputError(
            f"{folder}: the SavedModel runs operations this package's exports never use "
            f"({', '.join(foreign)}); a SavedModel is a program: pass --trust_model to run "
            "it anyway"
        )
