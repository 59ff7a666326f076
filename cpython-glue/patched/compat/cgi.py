# cgi.py - the two functions Django 3.2 takes from the `cgi` module, which
# Python 3.13 removed (PEP 594); put this directory on PYTHONPATH for benchmarks.
import re

__all__ = ["parse_header", "valid_boundary"]


def _split_params(s):
    # Split on ';' outside double quotes ('\"' does not close a quote).
    parts, cur, quoted, i = [], [], False, 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and quoted and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def parse_header(line):
    """'text/html; charset="utf-8"' -> ('text/html', {'charset': 'utf-8'})."""
    parts = _split_params(line)
    key = parts[0].strip()
    params = {}
    for p in parts[1:]:
        name, eq, value = p.partition("=")
        if not eq:
            continue
        name = name.strip().lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        params[name] = value
    return key, params


_BOUNDARY = re.compile(r"^[ -~]{0,200}[!-~]$")


def valid_boundary(s):
    """RFC 2046 boundary: up to 70 printable characters, not ending in a space."""
    if isinstance(s, bytes):
        s = s.decode("ascii", "replace")
    return bool(_BOUNDARY.match(s))
