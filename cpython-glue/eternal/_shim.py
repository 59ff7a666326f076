# eternal/_shim.py - routes the import system's unmarshalling and source
# compiles through the capture window, so every module gets the same treatment.
import sys
import types

_CODING = None
_ERROR_FILTER = ("error", None, Warning, None, 0)
_installed = []


def _foreign_coding(data):
    """True if a PEP 263 cookie names a codec other than UTF-8 (decoding it
    could import an encodings module from inside the window)."""
    global _CODING
    head = data[:512] if isinstance(data, (bytes, bytearray, memoryview)) else None
    if head is None or b"coding" not in bytes(head):
        return False
    if _CODING is None:
        import re
        _CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.ASCII)
    for line in bytes(head).splitlines()[:2]:
        m = _CODING.match(line)
        if m:
            name = m.group(1).lower().replace(b"_", b"-")
            return not (name == b"utf-8" or name.startswith(b"utf-8-"))
    return False


def _filters():
    w = sys.modules.get("warnings")
    if w is not None and isinstance(getattr(w, "filters", None), list):
        return w.filters
    import _warnings
    return _warnings.filters


def _compile_captured(C, data, path, optimize):
    """Compile inside the window, or return None to let the caller compile
    normally. Warnings are errors meanwhile, so no Python code (a
    showwarning hook) runs inside the window; a module that warns is then
    compiled the ordinary way and its warnings shown as usual."""
    if not C.capture_possible() or _foreign_coding(data):
        return None
    flt = _filters()
    saved = flt[:]
    flt[:] = [_ERROR_FILTER]
    try:
        return C.compile(data, path, optimize)
    finally:
        flt[:] = saved


_WRAP_S2C = """
def source_to_code(self, data, path, *, _optimize=-1):
    code = _compile_captured(C, data, path, _optimize)
    if code is not None:
        return code
    return orig_s2c(self, data, path, _optimize=_optimize)
"""

_WRAP_ZIP = """
def _compile_source(pathname, source):
    code = _compile_captured(C, norm(source), pathname, -1)
    return code if code is not None else orig_zc(pathname, source)
"""


def install(C):
    import marshal
    be = sys.modules["_frozen_importlib_external"]
    if _installed:
        return
    shim = types.ModuleType("marshal", marshal.__doc__)
    for k, v in vars(marshal).items():
        if not k.startswith("__"):
            setattr(shim, k, v)
    shim.loads = C.loads
    shim.__eternal_shim__ = True
    be.marshal = shim

    # The wrappers are compiled under importlib's own file names: the import
    # system drops those frames from tracebacks (SyntaxError in a module
    # shows the module only), and so it must drop ours.
    ns = {"C": C, "_compile_captured": _compile_captured}
    exec(compile(_WRAP_S2C, "<frozen importlib._bootstrap_external>", "exec"), ns)
    ns["orig_s2c"] = be.SourceLoader.source_to_code
    ns["source_to_code"].__doc__ = ns["orig_s2c"].__doc__
    ns["source_to_code"].__wrapped__ = ns["orig_s2c"]
    be.SourceLoader.source_to_code = ns["source_to_code"]

    try:
        import zipimport
    except ImportError:
        zipimport = None
    if zipimport is not None and hasattr(zipimport, "marshal"):
        zipimport.marshal = shim
        orig_zc = getattr(zipimport, "_compile_source", None)
        norm = getattr(zipimport, "_normalize_line_endings", None)
        if orig_zc is not None and norm is not None:
            zns = {"C": C, "_compile_captured": _compile_captured, "orig_zc": orig_zc, "norm": norm}
            exec(compile(_WRAP_ZIP, "<frozen zipimport>", "exec"), zns)
            zipimport._compile_source = zns["_compile_source"]
    _installed.append(shim)
