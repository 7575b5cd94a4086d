#!/usr/bin/env python3
"""Lists the import cycles between the modules of each crate, and exits 1 if there is any.

A module is a source file (`a.rs`, or `a/mod.rs`); module A imports module B when A's code,
outside its `#[cfg(test)]` modules, names `crate::b::...` (or `super::...`, resolved to the
same path), in a `use` or inline. A cycle is a strongly connected set of two or more modules:
no reading order exists for them. The parent-child relation of modules (`mod b;` in `a`) is
not an import.

    scripts/module-cycles.py [CRATE_DIR...]   # default: every workspace member with a src/
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] if '"' not in line else line for line in text.splitlines())


def without_test_modules(text):
    """Drops every `#[cfg(test)]` item that is a module with a body."""
    out = []
    i = 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        depth = 1
        j = m.end()
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    return "".join(out)


def module_path(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ()
    if parts and parts[0] == "bin":
        return None  # binaries are crates of their own
    return tuple(parts)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (segments only)."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    return [p for item in items if item for p in expand_use(prefix + item)]


def references(text):
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        for path in expand_use(m.group(1)):
            yield path.split(" as ")[0]
    for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", text):
        yield m.group(1)


def resolve(path, here, modules, is_dir_module):
    segments = path.split("::")
    if segments[0] == "crate":
        base, rest = (), segments[1:]
    elif segments[0] == "super":
        # `super` of a file module is its parent; of a `mod.rs` module, its parent too.
        base = here[:-1]
        rest = segments[1:]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    else:
        return None
    target = None
    for k in range(len(rest), -1, -1):
        candidate = base + tuple(rest[:k])
        if candidate in modules:
            target = candidate
            break
    return target


def cycles_of(crate):
    src = crate / "src"
    files = {}
    for path in sorted(src.rglob("*.rs")):
        module = module_path(src, path)
        if module is not None:
            files[module] = path
    modules = set(files)
    edges = {m: set() for m in modules}
    for module, path in files.items():
        text = without_test_modules(strip_comments(path.read_text()))
        for ref in references(text):
            target = resolve(ref, module, modules, path.name == "mod.rs")
            # A module naming itself, an ancestor's re-export path or its own descendants is
            # not an import between modules.
            if target is None or target == module or target == module[: len(target)] or target[: len(module)] == module:
                continue
            edges[module].add(target)
    return strongly_connected(edges), edges


def strongly_connected(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def name(module):
    return "::".join(module) or "crate"


def main():
    crates = [Path(a).resolve() for a in sys.argv[1:]]
    if not crates:
        crates = sorted(p.parent for p in REPO.glob("*/Cargo.toml") if (p.parent / "src").is_dir())
    found = 0
    for crate in crates:
        sccs, edges = cycles_of(crate)
        for scc in sccs:
            found += 1
            members = set(scc)
            print(f"{crate.name}: a cycle of {len(scc)} modules: {', '.join(name(m) for m in scc)}")
            for m in scc:
                for t in sorted(edges[m] & members):
                    print(f"  {name(m)} -> {name(t)}")
    if found:
        print(f"module-cycles: {found} cycle(s)")
        return 1
    print(f"module-cycles: no cycle between the modules of {len(crates)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
