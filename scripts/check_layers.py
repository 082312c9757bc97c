#!/usr/bin/env python3
"""The import layering of fgdiag, read from the code with `ast` (every import, also those inside functions
and TYPE_CHECKING blocks). Stricter than shared/tools/layers.py:

    rank 0  fgdiag.facts, fgdiag.diagnostic           (facts: fgclip.vocab's names, settings, plan)
    rank 1  fgdiag.events                             (the JSONL schema)
    rank 2  fgdiag.wire, fgdiag.targets               (our human lines; target profiles)
    rank 3  fgdiag.logs | fgdiag.rules | fgdiag.static | fgdiag.probes   (siblings: no arrow between them)
    rank 4  fgdiag.session | fgdiag.check | fgdiag.callback              (siblings)
    rank 5  fgdiag.render
    rank 6  fgdiag.runs
    rank 7  fgdiag.cli

A module imports only from its own group or a lower rank; no import circle inside fgdiag; fgclip never
imports fgdiag; no fgdiag module assigns a name that fgclip.vocab defines (import it instead); no float
literal 2.6592 or 4.6052 outside fgclip.vocab. `fgdiag/__init__.py` loads its public API by name (lazily)
and is exempt. Usage: python scripts/check_layers.py [ROOT]; prints the problems, exit 1 when there are any.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

GROUPS = {  # group -> rank
    "fgdiag.facts": 0,
    "fgdiag.diagnostic": 0,
    "fgdiag.events": 1,
    "fgdiag.wire": 2,
    "fgdiag.targets": 2,
    "fgdiag.logs": 3,
    "fgdiag.rules": 3,
    "fgdiag.static": 3,
    "fgdiag.probes": 3,
    "fgdiag.session": 4,
    "fgdiag.check": 4,
    "fgdiag.callback": 4,
    "fgdiag.render": 5,
    "fgdiag.runs": 6,
    "fgdiag.cli": 7,
}
CONSTANTS = (2.6592, 4.6052)


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group_of(name: str) -> str | None:
    return next((g for g in GROUPS if name == g or name.startswith(g + ".")), None)


def imported(name: str, path: Path, tree: ast.AST) -> set[str]:
    """Absolute names of every module this one imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def vocab_names(root: Path) -> set[str]:
    tree = ast.parse((root / "fgclip" / "vocab.py").read_text())
    return {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def check(root: Path) -> list[str]:
    paths = {
        module_name(root, p): p for p in sorted([*root.glob("fgdiag/**/*.py"), *root.glob("fgclip/**/*.py")])
    }
    trees = {name: ast.parse(path.read_text()) for name, path in paths.items()}
    graph = {
        name: {m for m in imported(name, paths[name], trees[name]) if m in paths} - {name} for name in paths
    }
    problems = [f"circle: {' <-> '.join(c)}" for c in circles(graph) if c[0].startswith("fgdiag")]
    shared = vocab_names(root)
    for name, deps in sorted(graph.items()):
        if name.startswith("fgclip"):
            problems += [
                f"{name} -> {d} (fgclip never imports fgdiag)" for d in deps if d.startswith("fgdiag")
            ]
            continue
        mine = group_of(name)
        for dep in sorted(deps):
            theirs = group_of(dep)
            if mine is None or theirs is None or theirs == mine:
                continue
            if GROUPS[theirs] >= GROUPS[mine]:
                problems.append(f"{name} -> {dep} ({theirs} is not below {mine})")
        if name == "fgclip.vocab" or not name.startswith("fgdiag"):
            continue
        for node in trees[name].body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            for target in targets:
                if isinstance(target, ast.Name) and target.id in shared:
                    problems.append(
                        f"{paths[name]}:{node.lineno}: {target.id} redefined (import it from fgclip.vocab)"
                    )
        for node in ast.walk(trees[name]):
            if isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value in CONSTANTS:
                problems.append(
                    f"{paths[name]}:{node.lineno}: literal {node.value} (use fgclip.vocab's constant)"
                )
    return problems


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    problems = check(root)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} layering problem(s)" if problems else "layers: imports flow one way")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
