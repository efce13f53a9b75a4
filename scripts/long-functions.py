#!/usr/bin/env python3
"""Lists functions longer than a limit (default 80 lines, body included) in Rust sources, and
fails when there is one: the rule that a reader can hold every function of the library code.

    scripts/long-functions.py [--limit N] [--report] DIR...

Every `.rs` file under each DIR is read; `#[cfg(test)]` items (unit-test modules) are skipped.
A function's length counts from its `fn` line to its closing brace. The parse is lexical: it
skips comments, strings (raw strings included) and character literals, and matches braces.
--report prints every function over the limit, longest first, and exits 0.
"""
import argparse
import os
import re
import sys

FN = re.compile(rb"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def code_mask(text):
    """The text with comments, strings and char literals blanked (newlines kept)."""
    out = bytearray(text)
    i, n = 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != 0x0A:
                out[k] = 0x20

    while i < n:
        c = text[i]
        if text.startswith(b"//", i):
            j = text.find(b"\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith(b"/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith(b"/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith(b"*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in b"rb" and re.match(rb"(?:br|r)#*\"", text[i:i + 260]) and (i == 0 or not (chr(text[i - 1]).isalnum() or text[i - 1] == 0x5F)):
            m = re.match(rb"(?:br|r)(#*)\"", text[i:])
            hashes = m.group(1)
            end = text.find(b"\"" + hashes, i + m.end())
            end = n if end < 0 else end + 1 + len(hashes)
            blank(i, end)
            i = end
        elif c == 0x22:  # "
            j = i + 1
            while j < n and text[j] != 0x22:
                j += 2 if text[j] == 0x5C else 1
            blank(i, j + 1)
            i = j + 1
        elif c == 0x27:  # ' : a char literal, or a lifetime
            m = re.match(rb"'(?:\\.[^']*|[^\\'])'", text[i:i + 12])
            if m:
                blank(i, i + m.end())
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    return bytes(out)


def matching_brace(code, open_at):
    depth = 0
    for k in range(open_at, len(code)):
        if code[k] == 0x7B:
            depth += 1
        elif code[k] == 0x7D:
            depth -= 1
            if depth == 0:
                return k
    return len(code) - 1


def test_ranges(code):
    """Byte ranges of `#[cfg(test)]` items."""
    ranges = []
    for m in re.finditer(rb"#\[cfg\(test\)\]", code):
        brace = code.find(b"{", m.end())
        semi = code.find(b";", m.end())
        if brace < 0 or (0 <= semi < brace):
            continue
        ranges.append((m.start(), matching_brace(code, brace)))
    return ranges


def functions(path):
    text = open(path, "rb").read()
    code = code_mask(text)
    skipped = test_ranges(code)
    for m in FN.finditer(code):
        if any(a <= m.start() <= b for a, b in skipped):
            continue
        # The body's brace: the first `{` after the signature, unless a `;` ends it first.
        k, depth = m.end(), 0
        while k < len(code):
            ch = code[k]
            if ch in b"(<[":
                depth += 1
            elif ch in b")>]":
                depth -= 1
            elif ch == 0x3B and depth <= 0:
                k = -1
                break
            elif ch == 0x7B and depth <= 0:
                break
            k += 1
        if k < 0 or k >= len(code):
            continue
        end = matching_brace(code, k)
        first = code.count(b"\n", 0, m.start()) + 1
        last = code.count(b"\n", 0, end) + 1
        yield m.group(1).decode(), first, last - first + 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=80)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    long = []
    for root in args.dirs:
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith(".rs"):
                    path = os.path.join(folder, name)
                    long += [(length, path, line, fn) for fn, line, length in functions(path) if length > args.limit]
    long.sort(reverse=True)
    for length, path, line, fn in long:
        print(f"{path}:{line}: fn {fn} is {length} lines (limit {args.limit})")
    if long and not args.report:
        print(f"{len(long)} function(s) over {args.limit} lines: split them into steps a reader can hold", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
