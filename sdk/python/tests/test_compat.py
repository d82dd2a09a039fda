"""The SDK's sources against what numpy 2 and protobuf 4-5 removed or changed.

GPU machines carry a newer stack (numpy 2.x, protobuf 5.x, Python 3.12) than the Debian one the
suite runs on, and numpy 1.24 does not warn for every numpy-2 removal. These checks read the
sources (every module of the SDK, the examples' and the bench's apps) so a removed name cannot
come back unnoticed; docs/python-operators.md says how the SDK was run on the newer stack.
"""

from __future__ import annotations

import ast
import os
from typing import Iterator, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.join(HERE, "..", "pollen")
ROOT = os.path.join(HERE, "..", "..", "..")
PROTO = os.path.join(SDK, "_proto")

# NEP 52 and the numpy 2.0 release notes: names removed from the main namespace.
NUMPY2_REMOVED = {
    "float_", "complex_", "longfloat", "singlecomplex", "cfloat", "clongfloat", "longcomplex",
    "string_", "unicode_", "Inf", "Infinity", "infty", "NaN", "NINF", "NZERO", "PINF", "PZERO",
    "product", "cumproduct", "alltrue", "sometrue", "round_", "asfarray", "find_common_type",
    "issubclass_", "issctype", "obj2sctype", "sctype2char", "maximum_sctype", "set_string_function",
    "safe_eval", "msort", "deprecate", "deprecate_with_doc", "disp", "who", "source", "lookfor",
    "byte_bounds", "compare_chararrays", "format_parser", "recfromcsv", "recfromtxt",
    "add_newdoc_ufunc", "add_docstring", "tracemalloc_domain", "geterrobj", "seterrobj",
    "fastCopyAndTranspose", "mat", "in1d", "row_stack", "trapz", "cast", "sctypes", "int0", "uint0",
    "bool8", "object0", "str0", "bytes0", "void0", "float96", "asscalar",
}


def _sources() -> Iterator[Tuple[str, ast.AST]]:
    roots = [SDK, os.path.join(ROOT, "bench", "python"), os.path.join(ROOT, "examples")]
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ("node_modules", "__pycache__")]
            if os.path.abspath(folder).startswith(os.path.abspath(PROTO)):
                continue
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as f:
                        yield os.path.relpath(path, ROOT), ast.parse(f.read(), path)


def _is_np(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("np", "numpy")


def test_no_name_that_numpy_2_removed() -> None:
    found: List[str] = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_np(node.value) and node.attr in NUMPY2_REMOVED:
                found.append(f"{path}:{node.lineno}: np.{node.attr}")
    assert found == []


def test_no_copy_false_whose_meaning_numpy_2_changed() -> None:
    # np.array(x, copy=False) raises in numpy 2 where a copy is needed (np.asarray is the spelling
    # for both); ndarray.newbyteorder is gone (dtype.newbyteorder stays).
    found: List[str] = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            f = node.func
            if _is_np(f.value) and f.attr == "array":
                if any(k.arg == "copy" and isinstance(k.value, ast.Constant) and k.value.value is False for k in node.keywords):
                    found.append(f"{path}:{node.lineno}: np.array(copy=False)")
            if f.attr == "newbyteorder":
                on_dtype = isinstance(f.value, ast.Call) and isinstance(f.value.func, ast.Attribute) and f.value.func.attr == "dtype"
                if not on_dtype:
                    found.append(f"{path}:{node.lineno}: .newbyteorder() on what may be an array")
    assert found == []


def test_no_field_label_or_removed_protobuf_api() -> None:
    # FieldDescriptor.label is deprecated in protobuf 5 (is_repeated / has_presence replace it);
    # the pure-python-only and private APIs below changed between 3.21 and 5.
    removed = {"label", "_SetListener", "_extensions_by_name", "RegisterExtension", "_CheckCalledFromGeneratedFile"}
    found: List[str] = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in removed:
                found.append(f"{path}:{node.lineno}: .{node.attr}")
    assert found == []


def test_generated_messages_use_only_apis_from_3_21_to_5() -> None:
    # protoc 3.21 output builds its classes from a serialized descriptor through
    # google.protobuf.internal.builder (present from protobuf 3.20 through 5.x and 6.x) and carries
    # no runtime-version check (which newer protoc emits and older runtimes lack).
    for folder, _dirs, files in os.walk(PROTO):
        for name in files:
            if not name.endswith("_pb2.py"):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            imported = {
                f"{n.module}.{a.name}"
                for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom)
                for a in n.names
                if n.module and n.module.startswith("google.protobuf")
            }
            allowed = {
                "google.protobuf.internal.builder",
                "google.protobuf.descriptor",
                "google.protobuf.descriptor_pool",
                "google.protobuf.symbol_database",
            }
            assert imported <= allowed, f"{name}: {sorted(imported - allowed)}"
