# Minimal `cgi` module for Django 3.2 on CPython 3.13, which removed cgi (PEP 594).
# Only what Django 3.2 calls: parse_header() and valid_boundary(); on PYTHONPATH for 3.13 runs only.
import re

__all__ = ["parse_header", "valid_boundary"]


def _split_params(s):
    # Yield the ';'-separated parts of a header value, keeping quoted ';' inside a part.
    while s[:1] == ";":
        s = s[1:]
        end = s.find(";")
        while end > 0 and (s.count('"', 0, end) - s.count('\\"', 0, end)) % 2:
            end = s.find(";", end + 1)
        if end < 0:
            end = len(s)
        yield s[:end].strip()
        s = s[end:]


def parse_header(line):
    """'text/html; charset="utf-8"' -> ('text/html', {'charset': 'utf-8'})."""
    parts = _split_params(";" + line)
    key = next(parts)
    pdict = {}
    for p in parts:
        i = p.find("=")
        if i < 0:
            continue
        name = p[:i].strip().lower()
        value = p[i + 1:].strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        pdict[name] = value
    return key, pdict


def valid_boundary(s):
    pattern = b"^[ -~]{0,200}[!-~]$" if isinstance(s, bytes) else "^[ -~]{0,200}[!-~]$"
    return re.match(pattern, s) is not None
