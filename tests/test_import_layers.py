"""Imports flow one way: the import graph of gan_brevitas (module-level and function-level
imports alike, read with ast) has no cycle and no import from a lower layer into a higher one.

A new package or top-level module needs a line in LAYERS: the layer it belongs to.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gan_brevitas"

#: Lowest first. A module may import its own layer and the layers below it, never above.
LAYERS: dict[str, int] = {
    "gan_brevitas.errors": 0,
    "gan_brevitas.atomic_files": 0,
    "gan_brevitas.limits": 0,
    "gan_brevitas.option_checks": 0,
    "gan_brevitas.cpu_features": 0,
    "gan_brevitas.models": 1,
    "gan_brevitas": 2,  # the package itself: QuantConfig, __version__
    "gan_brevitas.quant": 2,
    "gan_brevitas.inputs": 2,
    "gan_brevitas.metrics": 3,
    "gan_brevitas.ptq": 4,
    "gan_brevitas.qat": 4,
    "gan_brevitas.export": 5,
    "gan_brevitas.deploy": 5,
    "gan_brevitas.trt": 5,
    "gan_brevitas.backends": 6,
    "gan_brevitas.methods": 7,
    "gan_brevitas.recipes": 8,
    "gan_brevitas.harness": 9,  # the experiment harness: runs, cache, measure, the one writer
    "gan_brevitas.demo": 10,
    "gan_brevitas.reproduce": 10,
    "gan_brevitas.cli": 10,
    "gan_brevitas.export_commands": 10,
    "gan_brevitas.trt.evaluate": 10,  # a command: builds, times and measures an engine
}
#: Optional third-party libraries that importing the public API must not import.
OPTIONAL = ("modelopt", "tensorrt", "pycuda", "openvino")


def package_modules() -> dict[str, Path]:
    modules = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _targets(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join(anchor + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in its file)."""
    modules = package_modules()
    graph = {}
    for module, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, module, path.name == "__init__.py", modules):
                while target and target not in modules:  # "pkg.mod.attr" -> "pkg.mod"
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != module:
                    found.add(target)
        graph[module] = found
    return graph


def layer_of(module: str) -> int | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_every_module_has_a_layer():
    missing = sorted(m for m in package_modules() if layer_of(m) is None)
    assert not missing, f"add these modules (or their package) to LAYERS in {__file__}: {missing}"


def test_no_import_runs_up_the_layers():
    upward = sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(module) is not None and layer_of(target) is not None and layer_of(target) > layer_of(module)
    )
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_checks_see_function_level_imports_and_cycles():
    graph = import_graph()
    assert "gan_brevitas.backends.modelopt" in graph["gan_brevitas.methods.modelopt"]  # inside the handler
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_optional_libraries_stay_lazy():
    code = (
        "import sys, gan_brevitas.recipes, gan_brevitas.cli, gan_brevitas.methods\n"
        f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
