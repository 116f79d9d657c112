#!/usr/bin/env python3
"""Draw sigcoro's import graph from the source: every `use crate::..`, `use super::..` and
inline `crate::..` / `super::..` path outside comments, strings and `#[cfg(test)]` modules.

Usage: python3 .ci/imports.py [--edges] [--dot]   (run from the repository root)

Prints the top-level module graph, the edges that run against the layer order in
ARCHITECTURE.md, and the strongly connected components (import loops) between files.
"""
import os
import re
import sys

SRC = "src"
# The layer order of ARCHITECTURE.md, bottom first. A module may import modules of its own
# layer or below; an import of a higher layer is "upward".
LAYERS = [
    ["ground"],
    ["context", "stack", "overflow"],
    ["coroutine"],
    ["sched"],
    ["preempt"],
    ["io"],
    ["interrupt", "sync", "net", "blocking", "fs", "signal"],
    ["runtime"],
]
RANK = {m: i for i, names in enumerate(LAYERS) for m in names}


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    """Blanks comments, string and char literals, keeping newlines and offsets."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not re.match(r"\w", text[i - 1] if i else " "):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i : j + 1]))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(code):
    """Blanks `#[cfg(test)] mod x { .. }` bodies and `#[cfg(test)] mod x;` declarations."""
    for m in list(re.finditer(r"#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*mod\s+\w+\s*([{;])", code)):
        start = m.start()
        if m.group(2) == ";":
            end = m.end()
        else:
            depth, j = 0, m.end() - 1
            while True:
                if code[j] == "{":
                    depth += 1
                elif code[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            end = j + 1
        code = code[:start] + re.sub(r"[^\n]", " ", code[start:end]) + code[end:]
    return code


def inline_modules(code):
    """(start, end, name) of every inline `mod name { .. }` block."""
    spans = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code):
        depth, j = 0, m.end() - 1
        while True:
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        spans.append((m.start(), j, m.group(1)))
    return spans


def expand_use(tree):
    """`a::{b, c::{d, self}}` -> ["a::b", "a::c::d", "a::c"]."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    depth = 0
    for k, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                head, body = tree[:k], tree[k + 1 : tree.rindex("}")]
                parts, cur, d = [], "", 0
                for c in body:
                    if c == "," and d == 0:
                        parts.append(cur)
                        cur = ""
                        continue
                    d += c == "{"
                    d -= c == "}"
                    cur += c
                parts.append(cur)
                out = []
                for p in parts:
                    if not p:
                        continue
                    for sub in expand_use(p):
                        out.append(head[:-2] if sub == "self" else head + sub)
                return out
            depth += 1
    return [tree]


files = {}
for root, _, names in os.walk(SRC):
    for name in names:
        if name.endswith(".rs") and name != "tests.rs":
            p = os.path.join(root, name)
            files[module_of(p)] = p
modules = set(files)

# Re-exports: (module, name) -> the module that defines it.
reexports = {}


def resolve(base, segs):
    """The deepest file module that `segs` (absolute, from the crate root) names."""
    segs = list(segs)
    best = ()
    for k in range(len(segs) + 1):
        if tuple(segs[:k]) in modules:
            best = tuple(segs[:k])
    rest = segs[len(best) :]
    seen = 0
    while rest and (best, rest[0]) in reexports and seen < 8:
        target = reexports[(best, rest[0])]
        best, rest = target, rest[1:]
        seen += 1
    return best


def absolute(mod, inline, path):
    segs = path.split("::")
    if segs[0] in ("crate", "$crate"):
        return segs[1:]
    base = list(mod) + list(inline)
    while segs and segs[0] in ("super", "self"):
        if segs[0] == "super":
            base = base[:-1]
        segs = segs[1:]
    return base + segs


def references(mod, path):
    code = drop_test_modules(strip(open(path).read()))
    spans = inline_modules(code)

    def inline_at(pos):
        return [name for (s, e, name) in spans if s < pos < e]

    refs = []
    for m in re.finditer(r"\b(pub(\([^)]*\))?\s+)?use\s+([^;]*);", code):
        tree = m.group(3).strip()
        if not re.match(r"(\$?crate|super|self)\b", tree):
            continue
        for p in expand_use(tree):
            if p.endswith("::*"):
                p = p[:-3]
            refs.append((m.start(), p, bool(m.group(1))))
    uses = [(m.start(), m.end()) for m in re.finditer(r"\buse\s+[^;]*;", code)]
    for m in re.finditer(r"(?<![\w:])(\$?crate|super)(::\w+)+", code):
        if any(s <= m.start() < e for s, e in uses):
            continue
        refs.append((m.start(), m.group(0), False))
    return [(absolute(mod, inline_at(pos), p), p, pub, code.count("\n", 0, pos) + 1) for pos, p, pub in refs]


# First pass: re-exports (`pub use` / `pub(crate) use`), to follow `crate::Runtime` and the like.
for mod, path in files.items():
    for segs, _, pub, _ in references(mod, path):
        if pub and segs:
            reexports[(mod, segs[-1])] = resolve(mod, segs[:-1] if tuple(segs) not in modules else segs)
edges = {}
for mod, path in files.items():
    for segs, text, pub, line in references(mod, path):
        target = resolve(mod, segs)
        if target == mod or not target:
            continue
        edges.setdefault(mod, {}).setdefault(target, []).append(f"{text} ({files[mod]}:{line})")


def name(m):
    return "::".join(m) if m else "crate"


def top(m):
    return m[0] if m else "crate"


def scc(nodes, succ):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


args = set(sys.argv[1:])
if "--edges" in args:
    for a in sorted(edges):
        for b in sorted(edges[a]):
            print(f"{name(a):24} -> {name(b):24} {', '.join(sorted(set(edges[a][b])))}")
    sys.exit()

tops = {}
for a, bs in edges.items():
    for b in bs:
        if top(a) != top(b) and a and b:
            tops.setdefault(top(a), set()).add(top(b))
if "--dot" in args:
    print("digraph imports {")
    for a in sorted(tops):
        for b in sorted(tops[a]):
            print(f'  "{a}" -> "{b}";')
    print("}")
    sys.exit()

print("## Top-level modules: who imports whom (the crate root's re-exports left out)\n")
for a in sorted(tops, key=lambda m: (RANK.get(m, 99), m)):
    print(f"{a:10} -> {', '.join(sorted(tops[a], key=lambda m: (RANK.get(m, 99), m)))}")

print("\n## Upward imports (a lower layer naming a higher one)\n")
up = 0
for a in sorted(edges):
    for b in sorted(edges[a]):
        if not a or not b or top(a) == top(b):
            continue
        if RANK.get(top(a), 99) < RANK.get(top(b), 99):
            up += 1
            print(f"{name(a):22} -> {name(b):22} ({', '.join(sorted(set(edges[a][b])))})")
pairs = {(a, top(b)) for a in edges for b in edges[a] if a and b and RANK.get(top(a), 99) < RANK.get(top(b), 99)}
print(f"\n{up} upward imports from file to file; {len(pairs)} from a file to a higher top-level module")

print("\n## Loops between top-level modules\n")
for comp in scc(set(tops) | {b for bs in tops.values() for b in bs}, tops):
    if len(comp) > 1:
        print("loop:", ", ".join(comp))

print("\nPairs of top-level modules that import each other:")
for a in sorted(tops):
    for b in sorted(tops[a]):
        if a < b and a in tops.get(b, ()):
            print(f"  {a} <-> {b}")

print("\n## Loops between files (strongly connected components of more than one file)\n")
succ = {a: set(b for b in bs if b) for a, bs in edges.items() if a}
nodes = set(files) - {()}
for comp in scc(nodes, succ):
    if len(comp) > 1:
        print(f"{len(comp)} files:", ", ".join(name(m) for m in comp))
print(f"\n{len(nodes)} source files (lib.rs and test-only files left out)")
