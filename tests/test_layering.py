"""The package's imports run one way (README "Layout"): a test walks them, statically.

Every ``import`` / ``from ... import`` in every module of ``espnet_lw`` counts, also those inside
functions: a late import still ties two modules together. Three rules:

1. no module imports a module of a higher layer (``bin`` at the top, ``utils`` and friends at the
   bottom; see ``LAYERS``), so no library module imports ``espnet_lw.bin``;
2. no cycle between modules;
3. ``espnet_lw.runtime`` (what runs on a device) reaches neither torch nor espnet, directly or
   through another module of the package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

PKG = Path(__file__).resolve().parents[1] / "espnet_lw"

#: layer of each top-level part of the package: a module may import its own layer and those below
LAYERS = {
    "bin": 5,
    "benchmark": 4, "export": 4, "adapt": 4, "reference": 4, "inference": 4,
    "tasks": 3,
    "models": 2,
    "losses": 1,
    "data": 0, "scoring": 0, "decoding": 0, "results": 0, "utils": 0, "runtime": 0, "__init__": 0,
}

#: what the device runtime may import, besides the standard library
RUNTIME_THIRD_PARTY = {"numpy", "soundfile", "onnxruntime"}
RUNTIME_FORBIDDEN = {"torch", "torchaudio", "espnet", "espnet2", "librosa", "scipy"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def resolve(name: str, modules: Dict[str, Path]) -> Optional[str]:
    """The package module a dotted import name refers to (``a.b.c`` -> ``a.b.c`` or ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path, this: str, modules: Dict[str, Path]) -> tuple[Set[str], Set[str]]:
    """(package modules, top-level third-party names) that ``path`` imports anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    inner: Set[str] = set()
    outer: Set[str] = set()
    for node in ast.walk(tree):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = this.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names] or [prefix]
        for n in names:
            if n == "espnet_lw" or n.startswith("espnet_lw."):
                target = resolve(n, modules)
                if target and target != this and target != "espnet_lw":
                    inner.add(target)
            else:
                outer.add(n.split(".")[0])
    return inner, outer


def graph() -> tuple[Dict[str, Set[str]], Dict[str, Set[str]]]:
    modules = all_modules()
    inner, outer = {}, {}
    for name, path in modules.items():
        inner[name], outer[name] = imports_of(path, name, modules)
    return inner, outer


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    if part not in LAYERS:
        pytest.fail(f"{module}: its part '{part}' has no layer in tests/test_layering.py LAYERS: add it there "
                    "(and to README's layout section)")
    return LAYERS[part]


def test_every_part_of_the_package_has_a_layer():
    for module in all_modules():
        layer(module)


def test_no_module_imports_a_higher_layer():
    inner, _ = graph()
    upward = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
              for m, targets in sorted(inner.items()) for t in sorted(targets) if layer(t) > layer(m)]
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_no_library_module_imports_bin():
    inner, _ = graph()
    bad = [f"{m} imports {t}" for m, ts in sorted(inner.items()) if not m.startswith("espnet_lw.bin")
           for t in sorted(ts) if t.startswith("espnet_lw.bin")]
    assert not bad, "\n".join(bad)


def find_cycle(inner: Dict[str, Set[str]]) -> Optional[List[str]]:
    state: Dict[str, int] = {}  # 1 on the stack, 2 finished
    stack: List[str] = []

    def visit(m: str) -> Optional[List[str]]:
        state[m] = 1
        stack.append(m)
        for t in sorted(inner.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(inner):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle():
    inner, _ = graph()
    cycle = find_cycle(inner)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_one():  # the checker itself can fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_runtime_reaches_neither_torch_nor_espnet():
    inner, outer = graph()
    runtime = [m for m in inner if m.startswith("espnet_lw.runtime")]
    if not runtime:
        pytest.skip("no espnet_lw.runtime yet")
    seen: Set[str] = set()
    todo = list(runtime)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(inner[m])
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for m in sorted(seen):
        for name in sorted(outer[m]):
            if name in RUNTIME_FORBIDDEN or (name not in stdlib and name not in RUNTIME_THIRD_PARTY):
                problems.append(f"{m} imports {name}")
    assert not problems, "the runtime may import only numpy, soundfile, onnxruntime and the standard library:\n" + \
        "\n".join(problems)


def test_entry_points_do_not_import_each_other():
    """A bin module is an entry point: what two of them share lives in the library."""
    inner, _ = graph()
    bad = [f"{m} imports {t}" for m, ts in sorted(inner.items()) if m.startswith("espnet_lw.bin.")
           for t in sorted(ts) if t.startswith("espnet_lw.bin.")]
    assert not bad, "\n".join(bad)
