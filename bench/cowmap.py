# cowmap: which inherited pages did a forked worker copy, and what Python objects do they hold?
# Compares /proc/PID/pagemap frames of a master and its workers (root); importable (classify) and a CLI.
"""Usage (root, on any running forking server):

    python3 bench/cowmap.py --master PID --worker PID [--worker PID ...] [--dump FILE] [--json OUT]

Object attribution needs a map address -> object type taken inside the master.
The master provides it when it has called `cowmap.install_dump_handler()`
(our benchmark masters do; for your own server add it to e.g. gunicorn's
when_ready hook): on SIG_DUMP (SIGRTMIN+1) the master writes
/tmp/cowmap-objects-<pid>.bin.  This CLI reads all pagemaps FIRST and only then
signals the master, because the dump itself writes refcounts in the master and
would otherwise make its pages look copied.  Without a dump every copied
anonymous page is classed "unknown-heap".

Classes: code, str, str-interned, bytes, tuple, dict, function, type, other,
eternal-sealed, eternal-cow, unknown-heap (anonymous memory with no known
object: malloc/arena metadata, freed blocks, C data), file (private copy of a
file-backed mapping, e.g. relocated .data of a shared library), stack.
"""
import array
import gc
import json
import os
import signal
import struct
import sys
import time
import types

PAGE = os.sysconf("SC_PAGE_SIZE")
SIG_DUMP = signal.SIGRTMIN + 1
CLASSES = ("code", "str", "str-interned", "bytes", "tuple", "dict", "function", "type", "other",
           "eternal-sealed", "eternal-cow")
PFN_MASK = (1 << 55) - 1
PRESENT = 1 << 63
EXCLUSIVE = 1 << 56
FILE_OR_SHARED = 1 << 61   # "page is file-page or shared-anon": not a private anonymous copy


# ---------------------------------------------------------------- in-process side (master)

def _code_parts(co):
    parts = [co.co_consts, co.co_names, co.co_varnames, co.co_cellvars, co.co_freevars,
             co.co_filename, co.co_name, co.co_code]
    for attr in ("co_qualname", "co_linetable", "co_exceptiontable", "co_lnotab"):
        try:
            parts.append(getattr(co, attr))
        except Exception:
            pass
    return parts


def walk_objects(visit):
    """Call visit(obj) for every object reachable from the GC lists and from sys.modules, code
    objects and untracked objects (str, bytes, code, untracked tuples) included. Works after
    gc.freeze() (frozen objects are not in gc.get_objects() but are reached through referents).
    A plain function, not a generator, and its own containers are created after
    gc.get_objects(): otherwise the walk would find (and the caller would e.g. immortalize)
    its own bookkeeping."""
    stack = gc.get_objects()
    seen = set()
    skip = {id(stack), id(seen)}
    stack.append(sys.modules)
    stack.extend(sys.modules.values())
    code_type = types.CodeType
    referents = gc.get_referents
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        obj = pop()
        i = id(obj)
        if i in seen or i in skip:
            continue
        seen.add(i)
        visit(obj)
        if type(obj) is code_type:
            extend(_code_parts(obj))
        else:
            try:
                extend(referents(obj))
            except Exception:
                pass
    return len(seen)


def _class_of(obj, str_interned):
    t = type(obj)
    if t is types.CodeType:
        return "code"
    if t is str:
        return "str-interned" if str_interned(obj) else "str"
    if t is bytes:
        return "bytes"
    if t is tuple:
        return "tuple"
    if t is dict:
        return "dict"
    if t is types.FunctionType:
        return "function"
    if isinstance(obj, type):
        return "type"
    return "other"


def _interned_reader():
    # PyASCIIObject.state sits after ob_refcnt, ob_type, length, hash on 64-bit 3.x;
    # its two low bits are the interned state (3.12/3.13). Reading is side-effect free,
    # unlike sys.intern(), which would intern the string.
    try:
        import ctypes
        if struct.calcsize("P") != 8 or sys.version_info < (3, 12):
            return lambda s: False
        rd = ctypes.c_uint32.from_address
        return lambda s: bool(rd(id(s) + 32).value & 3)
    except Exception:
        return lambda s: False


def dump_objects(path=None):
    """Write (start, length, class index) triples for every reachable object; returns the path.
    Out-of-line buffers of exact dicts (keys table) and lists (item array) are included,
    attributed to 'dict' and 'other'."""
    import ctypes
    path = path or "/tmp/cowmap-objects-%d.bin" % os.getpid()
    cls_index = {c: i for i, c in enumerate(CLASSES)}
    out = array.array("Q")
    interned = _interned_reader()
    contiguous = (str, bytes, tuple, int, float, complex, types.CodeType)
    rd_ptr = ctypes.c_void_p.from_address
    et = sys.modules.get("eternal")
    tier_of = getattr(et, "tier_of", None)

    def visit(obj):
        t = type(obj)
        try:
            inner = obj.__sizeof__() if t is not type else t.__sizeof__(obj)
            pre = sys.getsizeof(obj) - inner
        except Exception:
            inner, pre = t.__basicsize__, 0
        body = inner if t in contiguous else t.__basicsize__
        c = cls_index[_class_of(obj, interned)]
        if tier_of is not None:
            try:
                tier = tier_of(obj)
            except Exception:
                tier = None
            if tier in ("sealed", "cow"):
                c = cls_index["eternal-" + tier]
        out.extend((id(obj) - max(pre, 0), body + max(pre, 0), c))
        try:
            if t is dict and inner > body:
                # ma_keys follows ob_refcnt, ob_type, ma_used, ma_version_tag
                keys = rd_ptr(id(obj) + 32).value
                if keys:
                    out.extend((keys, inner - body, c))
            elif t is list and inner > body:
                items = rd_ptr(id(obj) + 24).value  # ob_item after PyVarObject head
                if items:
                    out.extend((items, inner - body, cls_index["other"]))
        except Exception:
            pass
    walk_objects(visit)
    header = {"pid": os.getpid(), "classes": list(CLASSES), "python": sys.version.split()[0],
              "n": len(out) // 3, "time": time.time()}
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(json.dumps(header).encode() + b"\n")
        out.tofile(f)
    os.rename(tmp, path)
    return path


def install_dump_handler(signum=SIG_DUMP, path=None):
    """Install in the master: on `signum` it dumps its object map (see dump_objects)."""
    def handler(sig, frame):
        dump_objects(path)
    signal.signal(signum, handler)


def load_dump(path):
    with open(path, "rb") as f:
        header = json.loads(f.readline())
        arr = array.array("Q")
        arr.frombytes(f.read())
    return header, arr


# ---------------------------------------------------------------- outside view (/proc)

def read_maps(pid):
    """[(start, end, perms, name)] from /proc/PID/maps."""
    vmas = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5].strip() if len(parts) > 5 else ""
            vmas.append((lo, hi, parts[1], name))
    return vmas


def eternal_kind(name):
    """eternal-sealed / eternal-cow for the region's VMAs: named eternal:sealed, or with a
    prefix such as /memfd:eternal-py:sealed (deleted) as the stock glue names its memfds."""
    i = name.find("eternal")
    if i < 0:
        return None
    rest = name[i:]
    if ":sealed" in rest:
        return "eternal-sealed"
    if ":cow" in rest:
        return "eternal-cow"
    return None


def read_pagemap(pid, lo, hi):
    """array('Q') of pagemap entries for [lo, hi)."""
    arr = array.array("Q")
    with open("/proc/%d/pagemap" % pid, "rb", buffering=0) as f:
        f.seek(lo // PAGE * 8)
        want = (hi - lo) // PAGE * 8
        buf = b""
        while len(buf) < want:
            chunk = f.read(want - len(buf))
            if not chunk:
                break
            buf += chunk
    arr.frombytes(buf[: len(buf) // 8 * 8])
    return arr


def _vma_kind(name):
    k = eternal_kind(name)
    if k:
        return k
    if name.startswith("[stack"):
        return "stack"
    if name == "" or name.startswith("[heap") or name.startswith("[anon"):
        return "anon"
    return "file"


def vma_kinds(vmas):
    """Kind of each VMA. The region's data may sit in an unnamed anonymous mapping between
    guard pages that carry the memfd's name (the stock glue's cow tier): such a mapping
    takes the kind of the named neighbour it touches."""
    kinds = [_vma_kind(v[3]) for v in vmas]
    for i, v in enumerate(vmas):
        if kinds[i] != "anon" or v[3]:
            continue
        for j in (i - 1, i + 1):
            if 0 <= j < len(vmas) and kinds[j].startswith("eternal-") and (
                    vmas[j][1] == v[0] or vmas[j][0] == v[1]):
                kinds[i] = kinds[j]
                break
    return kinds


def snapshot(master, workers):
    """Read maps and pagemaps of master and workers. Returns a dict for compare()."""
    snap = {"master": master, "workers": list(workers), "maps": {}, "pagemaps": {}}
    for pid in [master] + list(workers):
        vmas = read_maps(pid)
        snap["maps"][pid] = vmas
        pms = {}
        for lo, hi, perms, name in vmas:
            if name.startswith("[vsyscall"):
                continue
            try:
                pms[lo] = read_pagemap(pid, lo, hi)
            except OSError:
                pass
        snap["pagemaps"][pid] = pms
    return snap


def _master_frame_lookup(snap):
    """addr-page -> master PFN, only for present pages."""
    master = snap["master"]
    frames = {}
    for lo, hi, perms, name in snap["maps"][master]:
        pm = snap["pagemaps"][master].get(lo)
        if pm is None:
            continue
        for i, e in enumerate(pm):
            if e & PRESENT:
                frames[lo + i * PAGE] = e & PFN_MASK
    return frames


def compare(snap):
    """For each worker: pages copied from the master (present in both, different frame,
    frame not shared with another worker; or an anonymous page in a file/memfd mapping),
    pages only in the worker (new), pages shared (same frame, or a page-cache/shmem page).
    A frame shared by two workers but not the master means the MASTER copied the page
    after the fork; those are counted as master_moved, not as worker copies."""
    master = snap["master"]
    mframes = _master_frame_lookup(snap)
    if mframes and all(v == 0 for v in list(mframes.values())[:1000]):
        raise PermissionError("pagemap frame numbers read as 0: run as root (CAP_SYS_ADMIN)")
    # frame -> number of workers mapping it at the same address
    shared_count = {}
    per_worker_pages = {}
    for w in snap["workers"]:
        pages = {}
        wmaps = sorted(snap["maps"][w])
        for (lo, hi, perms, name), kind in zip(wmaps, vma_kinds(wmaps)):
            pm = snap["pagemaps"][w].get(lo)
            if pm is None:
                continue
            for i, e in enumerate(pm):
                if e & PRESENT:
                    addr = lo + i * PAGE
                    pfn = e & PFN_MASK
                    pages[addr] = (pfn, kind, bool(e & FILE_OR_SHARED))
                    key = (addr, pfn)
                    shared_count[key] = shared_count.get(key, 0) + 1
        per_worker_pages[w] = pages
    result = {}
    for w, pages in per_worker_pages.items():
        copied, new, shared, moved = [], 0, 0, 0
        kinds = {}
        for addr, (pfn, kind, filepage) in pages.items():
            m = mframes.get(addr)
            if m is None:
                if filepage:
                    # page cache / shmem (e.g. the sealed memfd, which the master remapped at
                    # seal time and need not have touched since): shared, not the worker's own
                    shared += 1
                elif kind in ("eternal-sealed", "eternal-cow", "file"):
                    # a private anonymous page in a file/memfd mapping is a copy of a file page
                    copied.append(addr)
                    kinds[addr] = kind
                else:
                    new += 1
            elif m == pfn:
                shared += 1
            elif shared_count.get((addr, pfn), 0) > 1:
                moved += 1
            else:
                copied.append(addr)
                kinds[addr] = kind
        result[w] = {"copied": copied, "kinds": kinds, "new_pages": new,
                     "shared_pages": shared, "master_moved_pages": moved}
    return result


def _page_class_bytes(header, arr):
    """page addr -> {class: bytes of objects on that page}."""
    classes = header["classes"]
    pages = {}
    mask = ~(PAGE - 1)
    for j in range(0, len(arr), 3):
        start, length, c = arr[j], arr[j + 1], arr[j + 2]
        if length <= 0 or length > 1 << 32:
            continue
        end = start + length
        p = start & mask
        cname = classes[c]
        while p < end:
            seg = min(end, p + PAGE) - max(start, p)
            d = pages.get(p)
            if d is None:
                d = pages[p] = {}
            d[cname] = d.get(cname, 0) + seg
            p += PAGE
    return pages


_dump_cache = {}


def _dump_pages(dump_path):
    if dump_path not in _dump_cache:
        header, arr = load_dump(dump_path)
        _dump_cache[dump_path] = _page_class_bytes(header, arr)
    return _dump_cache[dump_path]


def classify(pid, page_addrs, dump_path=None, maps=None):
    """{page addr: class} for pages of process `pid` (normally the master), using the master's
    object dump when there is one (dominant class by bytes on the page) and the VMA names
    (eternal:sealed / eternal:cow, file-backed, stack) otherwise. Reused by the kmod reader."""
    if dump_path is None:
        cand = "/tmp/cowmap-objects-%d.bin" % pid
        dump_path = cand if os.path.exists(cand) else None
    objpages = _dump_pages(dump_path) if dump_path else {}
    vmas = sorted(maps if maps is not None else read_maps(pid))
    kinds = vma_kinds(vmas)
    starts = [v[0] for v in vmas]
    import bisect
    out = {}
    mask = ~(PAGE - 1)
    for addr in page_addrs:
        a = addr & mask
        k = bisect.bisect_right(starts, a) - 1
        kind = "anon"
        if k >= 0 and vmas[k][0] <= a < vmas[k][1]:
            kind = kinds[k]
        if kind in ("eternal-sealed", "eternal-cow", "file", "stack"):
            out[addr] = kind
            continue
        d = objpages.get(a)
        out[addr] = max(d, key=d.get) if d else "unknown-heap"
    return out


def page_holdings(dump_path):
    """page addr -> set of classes present on it (for 'pages holding X: % copied')."""
    return {p: set(d) for p, d in _dump_pages(dump_path).items()}


def catches(pid, signum):
    """True if process `pid` has a handler for `signum` (SigCgt in /proc/PID/status). The default
    action of a real-time signal is to terminate, so never send one to a process without a handler."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (int(signum) - 1) & 1)
    return False


def request_dump(master, timeout=60.0, signum=SIG_DUMP):
    """Signal the master to dump its object map; return the path, or None if nothing came
    (also None, without signalling, when the master has no handler installed)."""
    path = "/tmp/cowmap-objects-%d.bin" % master
    if not catches(master, signum):
        return None
    before = os.stat(path).st_mtime if os.path.exists(path) else None
    os.kill(master, signum)
    t_end = time.time() + timeout
    while time.time() < t_end:
        if os.path.exists(path) and os.stat(path).st_mtime != before:
            return path
        time.sleep(0.2)
    return None


def analyze(master, workers, dump_path=None, trigger=True):
    """Full attribution report (a JSON-able dict). Pagemaps are read before the dump is asked for."""
    snap = snapshot(master, workers)
    cmp = compare(snap)
    if dump_path is None and trigger:
        try:
            dump_path = request_dump(master)
        except ProcessLookupError:
            dump_path = None
    holdings = page_holdings(dump_path) if dump_path else {}
    mframes = _master_frame_lookup(snap)
    report = {"master": master, "page_size": PAGE, "dump": dump_path, "workers": {}}
    for w, r in cmp.items():
        cls = classify(master, r["copied"], dump_path, maps=snap["maps"][master])
        by_class = {}
        for addr, c in cls.items():
            by_class[c] = by_class.get(c, 0) + PAGE
        # pages holding objects of class X (present in master and worker): share copied
        copied_set = set(r["copied"])
        wpages = {}
        for lo, hi, perms, name in snap["maps"][w]:
            pm = snap["pagemaps"][w].get(lo)
            if pm is None:
                continue
            for i, e in enumerate(pm):
                if e & PRESENT:
                    wpages[lo + i * PAGE] = True
        holding = {}
        for p, classes in holdings.items():
            if p not in mframes or p not in wpages:
                continue
            for c in classes:
                h = holding.setdefault(c, [0, 0])
                h[0] += 1
                if p in copied_set:
                    h[1] += 1
        report["workers"][str(w)] = {
            "copied_bytes": len(r["copied"]) * PAGE,
            "new_bytes": r["new_pages"] * PAGE,
            "shared_bytes": r["shared_pages"] * PAGE,
            "master_moved_bytes": r["master_moved_pages"] * PAGE,
            "copied_by_class": dict(sorted(by_class.items(), key=lambda kv: -kv[1])),
            "pages_holding": {c: {"pages": h[0], "copied": h[1],
                                  "copied_pct": round(100.0 * h[1] / h[0], 1) if h[0] else 0.0}
                              for c, h in sorted(holding.items())},
        }
    return report


def format_report(rep):
    mb = lambda b: "%.1f" % (b / 1048576.0)
    lines = ["cowmap: master %s, dump %s" % (rep["master"], rep["dump"] or "none (unknown-heap)")]
    for w, r in rep["workers"].items():
        lines.append("worker %s: copied %s MB, new %s MB, shared %s MB, moved-by-master %s MB" % (
            w, mb(r["copied_bytes"]), mb(r["new_bytes"]), mb(r["shared_bytes"]),
            mb(r["master_moved_bytes"])))
        lines.append("  copied pages by dominant class: " + ", ".join(
            "%s %s MB" % (c, mb(b)) for c, b in r["copied_by_class"].items()))
        if r["pages_holding"]:
            lines.append("  pages holding class -> % copied: " + ", ".join(
                "%s %.0f%% of %d" % (c, h["copied_pct"], h["pages"])
                for c, h in r["pages_holding"].items()))
    return "\n".join(lines)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--master", type=int, required=True)
    ap.add_argument("--worker", type=int, action="append", default=[])
    ap.add_argument("--dump", help="object dump file (default: ask the master by signal)")
    ap.add_argument("--no-signal", action="store_true", help="never signal the master")
    ap.add_argument("--json", help="write the full report here")
    a = ap.parse_args(argv)
    workers = a.worker
    if not workers:
        with open("/proc/%d/task/%d/children" % (a.master, a.master)) as f:
            workers = [int(x) for x in f.read().split()]
    rep = analyze(a.master, workers, a.dump, trigger=not a.no_signal)
    if rep["dump"] is None and not a.no_signal and not a.dump:
        sys.stderr.write("cowmap: master %d has no handler for SIGRTMIN+1 (call cowmap.install_dump_handler() "
                         "in it for object classes); not signalled\n" % a.master)
    print(format_report(rep))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1)


if __name__ == "__main__":
    main()
