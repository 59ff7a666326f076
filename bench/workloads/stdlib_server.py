# stdlib-server workload: a prefork HTTP server of our own (sockets + os.fork, N workers, accept loop)
# whose master imports every importable stdlib module before forking; driven by bench/forkmem.py.
"""Environment: FORKMEM_MODE, FORKMEM_WORKERS (4), FORKMEM_PORT (0 = any), FORKMEM_READY (file),
FORKMEM_WARM_ONLY=1 (import and exit: fills PYTHONPYCACHEPREFIX), FORKMEM_DUMP_OBJECTS=1
(install the cowmap object-dump handler in the master)."""
import os
import sys
import time

T0 = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import modes  # noqa: E402

modes.early()

# Never imported: GUI, tests, modules with side effects at import (print, open a browser,
# touch the terminal), platform-specific ones that cannot load here.
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "readline",
        "__hello__", "__phello__", "_pyrepl", "ensurepip", "lib2to3", "pydoc_data", "msvcrt",
        "winreg", "winsound", "nt", "_winapi", "_overlapped", "_msi", "msilib", "_wmi",
        "xxsubtype", "xxlimited", "xxlimited_35", "_xxsubinterpreters", "_xxinterpchannels",
        "_xxtestfuzz", "_ctypes_test", "sitecustomize", "usercustomize", "_android_support",
        "_ios_support", "_apple_support"}
# Submodules that matter to a server app and are not imported by their package.
EXTRA = ["email.mime.text", "email.mime.multipart", "email.policy", "email.generator",
         "email.parser", "email.headerregistry", "urllib.request", "urllib.parse", "urllib.error",
         "http.server", "http.client", "http.cookies", "http.cookiejar", "xml.etree.ElementTree",
         "xml.dom.minidom", "xml.sax.saxutils", "html.parser", "html.entities", "json.decoder",
         "concurrent.futures", "logging.handlers", "logging.config", "multiprocessing.pool",
         "importlib.metadata", "importlib.resources", "sqlite3", "wsgiref.simple_server",
         "wsgiref.handlers", "unittest.mock", "asyncio", "ctypes.util", "dbm.dumb",
         "encodings.idna", "xmlrpc.client", "xmlrpc.server"]


def stdlib_names():
    names = getattr(sys, "stdlib_module_names", None)
    if names is None:  # 3.8/3.9: list what the stdlib directory holds
        import pkgutil
        import sysconfig
        std = sysconfig.get_paths()["stdlib"]
        names = {m.name for m in pkgutil.iter_modules([std, os.path.join(std, "lib-dynload")])}
        names |= set(sys.builtin_module_names)
    return sorted(n for n in names if n not in SKIP and not n.startswith("_test"))


def import_everything():
    import importlib
    import warnings
    ok, failed = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in stdlib_names() + EXTRA:
            try:
                importlib.import_module(name)
                ok.append(name)
            except BaseException:  # SystemExit from odd modules too
                failed.append(name)
        # Then every submodule of the stdlib packages (email.mime.*, xml.dom.*, encodings.*, ...).
        import pkgutil
        for name in list(ok):
            pkg = sys.modules.get(name)
            if pkg is None or not hasattr(pkg, "__path__") or "." in name:
                continue
            for info in pkgutil.walk_packages(pkg.__path__, name + ".", onerror=lambda n: None):
                parts = info.name.split(".")
                if parts[-1] == "__main__" or any(p in SKIP or p.startswith("test") for p in parts):
                    continue
                if info.name in sys.modules:
                    continue
                try:
                    importlib.import_module(info.name)
                    ok.append(info.name)
                except BaseException:
                    failed.append(info.name)
    return ok, failed


IMPORTED, FAILED = import_everything()
IMPORT_S = time.perf_counter() - T0

import base64  # noqa: E402
import csv  # noqa: E402
import datetime  # noqa: E402
import decimal  # noqa: E402
import difflib  # noqa: E402
import email.message  # noqa: E402
import email.parser  # noqa: E402
import email.policy  # noqa: E402
import fractions  # noqa: E402
import hashlib  # noqa: E402
import html  # noqa: E402
import html.parser  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import string  # noqa: E402
import textwrap  # noqa: E402
import urllib.parse  # noqa: E402
import uuid  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
import zlib  # noqa: E402

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()
LOG_RE = re.compile(r'(?P<ip>\d+\.\d+\.\d+\.\d+) - - \[(?P<ts>[^\]]+)\] "(?P<m>\w+) (?P<p>\S+)[^"]*" (?P<s>\d{3}) (?P<n>\d+)')


def _words(seed, n):
    return [WORDS[(seed * 7 + i * 13) % len(WORDS)] for i in range(n)]


def ep_json(q, seed):
    doc = {"id": seed, "name": " ".join(_words(seed, 3)), "tags": _words(seed, 8),
           "items": [{"sku": "S%05d" % (seed + i), "qty": i, "price": str(decimal.Decimal(i) / 7)}
                     for i in range(20)]}
    s = json.dumps(doc, sort_keys=True)
    back = json.loads(s)
    return "application/json", json.dumps({"len": len(s), "items": len(back["items"]), "doc": back})


def ep_re(q, seed):
    lines = ['10.0.%d.%d - - [26/Nov/2026:08:%02d:%02d +0000] "GET /%s?x=%d HTTP/1.1" 200 %d'
             % (seed % 256, i, i % 60, (seed + i) % 60, "/".join(_words(seed + i, 2)), i, 100 + i)
             for i in range(50)]
    hits = [m.groupdict() for m in map(LOG_RE.match, lines) if m]
    words = re.findall(r"\b[a-z]{5,}\b", " ".join(lines))
    return "application/json", json.dumps({"hits": len(hits), "long_words": len(words),
                                           "first": hits[0] if hits else None})


def ep_email(q, seed):
    msg = email.message.EmailMessage()
    msg["From"] = "Bench <bench@example.org>"
    msg["To"] = ", ".join("%s@example.com" % w for w in _words(seed, 3))
    msg["Subject"] = "Order %d: %s" % (seed, " ".join(_words(seed, 4)))
    msg.set_content("\n".join(textwrap.wrap(" ".join(_words(seed, 120)), 60)))
    msg.add_attachment(b"\x00\x01binary" * 20, maintype="application", subtype="octet-stream",
                       filename="blob-%d.bin" % seed)
    raw = msg.as_bytes()
    back = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    return "text/plain", "%s\n%d bytes, %d parts" % (back["Subject"], len(raw),
                                                     len(list(back.iter_parts())))


class _TextCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.text, self.tags = [], 0

    def handle_starttag(self, tag, attrs):
        self.tags += 1

    def handle_data(self, data):
        self.text.append(data)


PAGE_T = string.Template("<html><head><title>$title</title></head><body><h1>$title</h1>"
                         "<ul>$items</ul><p>$body</p></body></html>")


def ep_html(q, seed):
    items = "".join("<li class='i%d'>%s</li>" % (i, html.escape("<%s & %s>" % tuple(_words(seed + i, 2))))
                    for i in range(30))
    page = PAGE_T.substitute(title=html.escape(" ".join(_words(seed, 3))), items=items,
                             body=html.escape(" ".join(_words(seed, 60))))
    p = _TextCollector()
    p.feed(page)
    return "text/html", page + "<!-- %d tags, %d text nodes -->" % (p.tags, len(p.text))


def ep_urllib(q, seed):
    params = {w: str(i * seed) for i, w in enumerate(_words(seed, 10))}
    url = urllib.parse.urlunsplit(("https", "example.org:8443", "/a/%s/b" % urllib.parse.quote("x y/z"),
                                   urllib.parse.urlencode(params), "frag"))
    parts = urllib.parse.urlsplit(url)
    qs = urllib.parse.parse_qs(parts.query)
    joined = urllib.parse.urljoin(url, "../c/d?e=1")
    return "application/json", json.dumps({"url": url, "host": parts.hostname, "port": parts.port,
                                           "n": len(qs), "joined": joined, "in": q})


def ep_decimal(q, seed):
    ctx = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)
    total = decimal.Decimal(0)
    for i in range(1, 200):
        total = ctx.add(total, ctx.divide(decimal.Decimal(seed + i), decimal.Decimal(i * 3 + 1)))
    fr = sum(fractions.Fraction(1, i) for i in range(1, 40))
    mean = statistics.mean([float(i * seed % 97) for i in range(100)])
    return "application/json", json.dumps({"total": str(total.quantize(decimal.Decimal("0.0001"))),
                                           "harmonic": str(fr), "mean": mean})


def ep_datetime(q, seed):
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    stamps = [base + datetime.timedelta(hours=seed + i * 7, minutes=i) for i in range(60)]
    iso = [s.isoformat() for s in stamps]
    back = [datetime.datetime.fromisoformat(s) for s in iso]
    fmt = [s.strftime("%a %d %b %Y %H:%M") for s in back[:10]]
    days = sorted({s.date().isoformat() for s in back})
    return "application/json", json.dumps({"first": iso[0], "fmt": fmt, "days": days})


def ep_xml(q, seed):
    root = ET.Element("catalog", version="1")
    for i in range(40):
        e = ET.SubElement(root, "item", id=str(seed + i))
        ET.SubElement(e, "name").text = " ".join(_words(seed + i, 2))
        ET.SubElement(e, "price").text = "%.2f" % (i * 1.25)
    raw = ET.tostring(root, encoding="unicode")
    parsed = ET.fromstring(raw)
    return "application/xml", raw[:2000] + "<!-- %d -->" % len(parsed.findall("item"))


def ep_csv(q, seed):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "word", "hash", "uuid"])
    for i in range(80):
        word = WORDS[(seed + i) % len(WORDS)]
        w.writerow([i, word, hashlib.sha256(word.encode() + bytes([i])).hexdigest()[:16],
                    str(uuid.uuid5(uuid.NAMESPACE_DNS, "%s.%d" % (word, seed)))])
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    z = zlib.compress(buf.getvalue().encode())
    return "text/csv", "%d rows, %d compressed, %s" % (len(rows), len(z), base64.b64encode(z[:24]).decode())


def ep_text(q, seed):
    a = textwrap.wrap(" ".join(_words(seed, 80)), 50)
    b = textwrap.wrap(" ".join(_words(seed + 1, 80)), 50)
    diff = list(difflib.unified_diff(a, b, lineterm=""))
    return "text/plain", "\n".join(diff[:40])


ROUTES = {"/json": ep_json, "/re": ep_re, "/email": ep_email, "/html": ep_html, "/urllib": ep_urllib,
          "/decimal": ep_decimal, "/datetime": ep_datetime, "/xml": ep_xml, "/csv": ep_csv,
          "/text": ep_text}
PATHS = sorted(ROUTES)


def handle(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        method, target, _ = line.split(" ", 2)
        path, _, query = target.partition("?")
        seed = int(urllib.parse.parse_qs(query).get("s", ["1"])[0])
        ctype, body = ROUTES[path](query, seed)
        status = "200 OK"
    except KeyError:
        status, ctype, body = "404 Not Found", "text/plain", "no route"
    except Exception as e:
        status, ctype, body = "500 Internal Server Error", "text/plain", repr(e)
    payload = body.encode("utf-8")
    head = ("HTTP/1.1 %s\r\nContent-Type: %s; charset=utf-8\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % (status, ctype, len(payload))).encode("latin-1")
    conn.sendall(head + payload)


def worker_loop(lsock):
    while True:
        conn, _ = lsock.accept()
        try:
            handle(conn)
        except OSError:
            pass
        finally:
            conn.close()


def main():
    if os.environ.get("FORKMEM_WARM_ONLY"):
        for p in PATHS:  # run every endpoint once so lazily imported modules get cached too
            ROUTES[p]("s=1", 1)
        print("warm: %d modules imported, %d skipped/failed" % (len(IMPORTED), len(FAILED)))
        return
    nworkers = int(os.environ.get("FORKMEM_WORKERS", "4"))
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", int(os.environ.get("FORKMEM_PORT", "0"))))
    lsock.listen(256)
    if os.environ.get("FORKMEM_DUMP_OBJECTS"):
        import cowmap
        cowmap.install_dump_handler()
    facts, _ = modes.before_fork()
    children = []
    for _ in range(nworkers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            modes.after_fork_child()
            try:
                worker_loop(lsock)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum, frame):
        for c in children:
            try:
                os.kill(c, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for c in children:
            try:
                os.waitpid(c, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    modes.write_ready(dict(facts, port=lsock.getsockname()[1], workers=children,
                           import_s=IMPORT_S, modules=len(sys.modules), imported=len(IMPORTED),
                           failed=FAILED, paths=PATHS))
    while True:
        try:
            pid, st = os.wait()
            sys.stderr.write("stdlib-server: worker %d exited with status %d\n" % (pid, st))
        except ChildProcessError:
            return
        except InterruptedError:
            pass


if __name__ == "__main__":
    main()
