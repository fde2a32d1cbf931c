"""The kit's import layers, checked: import cycles and upward imports in medtl_lib.

    python scripts/check_layers.py            # exit 0: no cycle, no upward import
    python scripts/check_layers.py --root DIR # another copy of the package (tests use a fake one)

Reads every ``import`` in the package with ``ast``, at module level and inside functions,
relative and absolute; an import under ``if TYPE_CHECKING:`` never runs and is left out (so is
``importlib.import_module``: plugins load by name, on purpose). A module sits in the layer of its
first name under the package (``medtl_lib.data.index`` is ``data``); it may import its own layer
and the layers below, never above. A cycle is a strongly connected component of the module graph
(module = one .py file; a package is its ``__init__.py``). A module whose first name is missing
from LAYERS is reported too, so that a new module gets a place here.
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

# The layer table, low to high: the one place it is written down.
LAYERS: list[tuple[str, ...]] = [
    ("__init__", "utils", "paths", "faults", "device", "distributed", "registry", "run_folder",
     "metrics", "intervals", "plugins", "checkpoint_files"),                         # L0: foundations
    ("data",),                                              # L1
    ("models",),                                            # L2
    ("training",),                                          # L3
    ("config",),                                            # L4
    ("train_run", "search_cut", "bench"),                   # L5: one run / search / benchmark
    ("evaluation", "analysis"),                             # L6
    ("orchestration", "profiles", "launchers"),             # L7 (profiles, launchers: the old)
    ("teaching",),                                          # L8
    ("api", "cli", "__main__"),                             # L9: api re-exports the registries
]
PACKAGE = "medtl_lib"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def layer_of_name(layers: list[tuple[str, ...]]) -> dict[str, int]:
    return {name: i for i, names in enumerate(layers) for name in names}


@dataclass(frozen=True)
class Import:
    src: str      # importing module, dotted
    dst: str      # imported module of the package, dotted
    file: Path
    line: int


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file for every .py file under root (a package is its __init__.py)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([package, *parts])] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth, except under ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)  # the body never runs
            continue
        todo.extend(ast.iter_child_nodes(node))


def imports(root: Path, package: str = PACKAGE) -> tuple[dict[str, Path], list[Import]]:
    mods = module_names(root, package)

    def known(name: str) -> str | None:  # the module itself, else its nearest package above
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    found = []
    for mod, file in mods.items():
        is_pkg = file.name == "__init__.py"
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
        for node in _import_nodes(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = mod.split(".")
                    base = base[: len(base) - (node.level - (1 if is_pkg else 0))]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for a in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                    targets.append(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
            for t in targets:
                if t != package and not t.startswith(package + "."):  # not the kit's
                    continue
                dst = known(t)
                if dst and dst != mod:
                    found.append(Import(mod, dst, file, node.lineno))
    return mods, list(dict.fromkeys(found))  # `from x import a, b`: one import


def layer_key(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(mods: dict[str, Path], found: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {m: [] for m in mods}
    for imp in found:
        graph[imp.src].append(imp.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def check(root: Path = ROOT, package: str = PACKAGE, layers=None, out=sys.stdout) -> dict:
    """Prints every cycle, upward import and unplaced module; returns their counts."""
    rank = layer_of_name(LAYERS if layers is None else layers)
    mods, found = imports(root, package)
    base = root.parent

    def where(imp: Import) -> str:
        try:
            return f"{imp.file.relative_to(base)}:{imp.line}"
        except ValueError:
            return f"{imp.file}:{imp.line}"

    unplaced = sorted({layer_key(m) for m in mods} - set(rank))
    for name in unplaced:
        print(f"unplaced: {package}.{name} is in no layer (add it to LAYERS in "
              f"scripts/check_layers.py)", file=out)
    comps = cycles(mods, found)
    for i, comp in enumerate(comps, 1):
        members = set(comp)
        print(f"cycle {i} ({len(comp)} modules): {', '.join(comp)}", file=out)
        for imp in sorted(found, key=lambda x: (str(x.file), x.line)):
            if imp.src in members and imp.dst in members:
                print(f"    {where(imp)}: {imp.src} -> {imp.dst}", file=out)
    upward = [imp for imp in found
              if rank.get(layer_key(imp.src), -1) < rank.get(layer_key(imp.dst), -1)
              and layer_key(imp.src) in rank]
    for imp in sorted(upward, key=lambda x: (str(x.file), x.line)):
        s, d = layer_key(imp.src), layer_key(imp.dst)
        print(f"upward: {where(imp)}: {imp.src} (L{rank[s]} {s}) imports {imp.dst} "
              f"(L{rank[d]} {d})", file=out)
    counts = {"modules": len(mods), "imports": len(found), "cycles": len(comps),
              "modules_in_cycles": sum(map(len, comps)), "upward": len(upward),
              "unplaced": len(unplaced)}
    print("{modules} modules, {imports} imports: {cycles} cycles ({modules_in_cycles} modules), "
          "{upward} upward imports, {unplaced} unplaced".format(**counts), file=out)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="the package folder (default: %(default)s)")
    args = ap.parse_args(argv)
    counts = check(args.root.resolve(), args.root.resolve().name)
    return 1 if counts["cycles"] or counts["upward"] or counts["unplaced"] else 0


if __name__ == "__main__":
    sys.exit(main())
