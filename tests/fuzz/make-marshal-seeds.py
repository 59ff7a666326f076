#!/usr/bin/env python3
# make-marshal-seeds.py - seed corpus for fuzz_marshal: the marshal payloads of
# real .pyc files (small stdlib modules) plus hand-made edge cases of each type code.
import hashlib
import importlib.util
import marshal
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "marshal")
os.makedirs(out, exist_ok=True)
seeds = []
for name in ("this", "keyword", "token", "colorsys", "bisect", "heapq", "stat", "fnmatch",
             "genericpath", "copyreg", "reprlib", "numbers", "opcode", "glob", "shlex"):
    spec = importlib.util.find_spec(name)
    if spec and spec.origin and spec.origin.endswith(".py"):
        with open(spec.origin, "rb") as f:
            code = compile(f.read(), spec.origin, "exec")
        data = marshal.dumps(code)  # what a .pyc holds after its 16-byte header
        if len(data) <= 16384:
            seeds.append(data)
for v in (0, 1, -1, 2**31, 2**64, -(2**100), 1.5, float("nan"), -0.0, 1 + 2j, "x", "é€😀", "a" * 300,
          b"", b"\x00" * 40, (), (1, "a", (2.0,)), frozenset({1, "b"}), [1, [2]], {"k": (1, 2)}, None,
          True, Ellipsis, StopIteration, {1, 2}, ("interned", "interned")):
    for version in (0, 2, 4):
        try:
            seeds.append(marshal.dumps(v, version))
        except ValueError:
            pass
for s in seeds:
    with open(os.path.join(out, hashlib.sha1(s).hexdigest()), "wb") as f:
        f.write(s)
print(f"{len(seeds)} seeds in {out}")
