#!/usr/bin/env python3
"""Lists import circles between the top-level modules of each crate given (its src/ folder).

A module depends on another when its code (not its comments, not its tests) names
`crate::<other>`. A circle between a type's module and its error's module is allowed by the
layout rules; every other circle is printed. Exits 1 when any circle is found.

    scripts/module-cycles.py crates/*/src installer/src platform/src
"""
import itertools
import os
import re
import sys


def modules(src):
    """Top-level module name -> its files."""
    found = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            top = "(root)" if parts in (["lib"], ["main"]) else parts[0]
            found.setdefault(top, []).append(path)
    return found


def code_of(path):
    """The file's code without comments and without its #[cfg(test)] part."""
    text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def dependencies(found):
    return {
        top: {
            name
            for path in paths
            for name in re.findall(r"crate::([a-z_0-9]+)", code_of(path))
            if name in found and name != top
        }
        for top, paths in found.items()
    }


circles = []
for src in sys.argv[1:]:
    graph = dependencies(modules(src))
    for a, b in itertools.combinations(sorted(graph), 2):
        if b in graph[a] and a in graph[b] and "error" not in (a, b):
            circles.append(f"{src}: {a} <-> {b}")
print("\n".join(circles) or "no import circles")
sys.exit(1 if circles else 0)
