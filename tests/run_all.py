#!/usr/bin/env python3
"""run_all.py - run every test suite of libeternal and print one tally.

Suites: the C tests (meson), the C tests again under AddressSanitizer and
UndefinedBehaviorSanitizer with -Werror, the glue's pytest suites under each
CPython, and the TAP-speaking scripts (CPython's regression tests under the
glue, the patched interpreter, the kernel module in qemu). The last line is
`N passed, N failed, N skipped`; the exit status is 1 if anything failed.
Standard library only: it runs before anything else is installed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tally:
    def __init__(self):
        self.passed, self.failed, self.skipped = 0, 0, 0
        self.failures, self.skips, self.suites = [], [], []

    def add(self, suite, name, status, reason=""):
        if status == "pass":
            self.passed += 1
        elif status == "skip":
            self.skipped += 1
            self.skips.append(f"{suite}: {name}: {reason}".rstrip(": "))
        else:
            self.failed += 1
            self.failures.append(f"{suite}: {name}{': ' + reason if reason else ''}")


def log(msg):
    print(msg, flush=True)


def run(cmd, env=None, timeout=None, cwd=ROOT):
    """Run a command, streaming its output; return (rc, output)."""
    log(f"$ {' '.join(cmd)}")
    out = []
    try:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
        start = time.monotonic()
        for line in p.stdout:
            out.append(line)
            sys.stdout.write("    " + line)
            sys.stdout.flush()
            if timeout and time.monotonic() - start > timeout:
                p.kill()
                out.append(f"TIMEOUT after {timeout}s\n")
                break
        rc = p.wait()
    except FileNotFoundError as e:
        return 127, str(e)
    return rc, "".join(out)


def meson_suite(t, label, builddir, suites, setup_args):
    """Configure and build @builddir, run the meson tests, read testlog.json."""
    if not os.path.exists(os.path.join(builddir, "build.ninja")):
        rc, _ = run(["meson", "setup", builddir] + setup_args)
        if rc:
            t.add(label, "meson setup", "fail", f"exit {rc}")
            return
    rc, _ = run(["ninja", "-C", builddir])
    if rc:
        t.add(label, "build", "fail", f"ninja exit {rc}")
        return
    logfile = os.path.join(builddir, "meson-logs", "testlog.json")
    if os.path.exists(logfile):
        os.unlink(logfile)
    cmd = ["meson", "test", "-C", builddir, "--print-errorlogs", "--num-processes", "2"]
    for s in suites:
        cmd += ["--suite", s]
    run(cmd)
    if not os.path.exists(logfile):
        t.add(label, "meson test", "fail", "no testlog.json written")
        return
    with open(logfile) as f:
        for line in f:
            rec = json.loads(line)
            status = {"OK": "pass", "SKIP": "skip"}.get(rec["result"], "fail")
            reason = ""
            if status == "skip":
                m = re.search(r"SKIP: (.*)", rec.get("stderr", "") or "")
                reason = m.group(1).strip() if m else "no reason given"
            elif status == "fail":
                reason = rec["result"]
            t.add(label, rec["name"], status, reason)


def pytest_suite(t, label, python, paths, env):
    """Run pytest under @python with a JUnit report and count its cases."""
    xml = os.path.join(ROOT, "build", f"junit-{label}.xml")
    rc, out = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", xml] + paths,
                  env=env)
    if not os.path.exists(xml):
        t.add(label, "pytest", "fail", f"exit {rc}, no report")
        return
    root = ET.parse(xml).getroot()
    cases = list(root.iter("testcase"))
    os.unlink(xml)
    if not cases:
        t.add(label, "pytest", "fail", "no test collected")
    for c in cases:
        name = f"{c.get('classname', '')}::{c.get('name')}"
        if c.find("failure") is not None or c.find("error") is not None:
            t.add(label, name, "fail")
        elif c.find("skipped") is not None:
            t.add(label, name, "skip", c.find("skipped").get("message", ""))
        else:
            t.add(label, name, "pass")


TAP = re.compile(r"^(not ok|ok)\b\s*(?:\d+\s*)?-?\s*(.*?)(?:\s+#\s*(SKIP|TODO)\b\s*(.*))?$")


def tap_suite(t, label, cmd, env=None, timeout=None):
    """Run a script that prints TAP lines; its exit status must agree."""
    rc, out = run(cmd, env=env, timeout=timeout)
    seen = 0
    for line in out.splitlines():
        m = TAP.match(line.strip())
        if not m:
            continue
        seen += 1
        ok, name, directive, reason = m.groups()
        if directive == "SKIP":
            t.add(label, name, "skip", reason or "")
        elif directive == "TODO" and ok == "not ok":
            # A known gap, declared as such: neither a pass nor a failure.
            t.add(label, name, "skip", "TODO " + (reason or ""))
        else:
            t.add(label, name, "pass" if ok == "ok" else "fail")
    if not seen:
        t.add(label, "run", "fail", f"exit {rc}, no TAP lines")
    elif rc != 0 and not any(f.startswith(label + ":") for f in t.failures):
        t.add(label, "exit status", "fail", f"exit {rc} with every check passing")


def pyenv_python(version):
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() or \
        os.path.expanduser("~/.pyenv")
    exe = os.path.join(root, "versions", version, "bin", "python" + version.rsplit(".", 1)[0])
    return exe if os.path.exists(exe) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", default=[],
                    help="run only these suites (c, valgrind, sanitize, glue, cpython, patched, placement, kmod);"
                         " repeatable")
    args = ap.parse_args()
    want = set(args.only) or {"c", "valgrind", "sanitize", "glue", "cpython", "patched", "placement", "kmod"}
    t = Tally()
    started = time.monotonic()

    if "c" in want:
        log("== C tests")
        meson_suite(t, "c", os.path.join(ROOT, "build"), [], [])
    script = os.path.join(ROOT, "tests", "run-valgrind.sh")
    if "valgrind" in want and os.path.exists(script):
        log("== core C tests under valgrind memcheck")
        tap_suite(t, "valgrind", ["bash", script, os.path.join(ROOT, "build-valgrind"), "core"], timeout=1800)
    if "sanitize" in want:
        log("== C tests under ASan + UBSan, -Werror")
        meson_suite(t, "asan+ubsan", os.path.join(ROOT, "build-sanitize"), ["core", "trap", "faults", "proofs", "placement"],
                    ["-Db_sanitize=address,undefined", "-Dwerror=true", "-Dglue=disabled",
                     "-Db_lundef=false"])

    # Before the glue tests: they check the eternal package on the patched build too.
    script = os.path.join(ROOT, "cpython-glue", "patched", "test.sh")
    if "patched" in want and os.path.exists(script):
        log("== patched CPython 3.13.5")
        tap_suite(t, "patched", ["bash", script], timeout=2400)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = "/usr/lib/python3/dist-packages"
    env["ETERNAL_BUILD_DIR"] = os.path.join(ROOT, "build")  # never a stale private build dir
    pythons = [(v, pyenv_python(v)) for v in ("3.12.1", "3.13.0")]
    if "glue" in want and os.path.isdir(os.path.join(ROOT, "tests", "glue")):
        for v, py in pythons:
            log(f"== glue tests, CPython {v}")
            if not py:
                t.add(f"glue-{v}", "interpreter", "fail", f"pyenv {v} not installed")
                continue
            paths = [os.path.join(ROOT, "tests", "glue")]
            if v == pythons[0][0]:  # it runs both interpreters itself
                paths.append(os.path.join(ROOT, "tests", "faults", "test_glue_exhaustion.py"))
            pytest_suite(t, f"glue-{v}", py, paths, env)
    script = os.path.join(ROOT, "tests", "glue", "run_cpython_tests.sh")
    if "cpython" in want and os.path.exists(script):
        log("== CPython's regression tests, stock and under the glue sealed strict")
        cmd = ["bash", script]
        for v, py in pythons:
            if py:
                cmd += ["-p", py]
        tap_suite(t, "cpython", cmd, env=env, timeout=3600)
    if "placement" in want:
        script = os.path.join(ROOT, "tests", "placement", "huge-pages.sh")
        binary = os.path.join(ROOT, "build", "tests", "placement", "huge_pages")
        if os.path.exists(script) and os.path.exists(binary):
            log("== huge pages (sizes vm.nr_hugepages, restores it)")
            tap_suite(t, "hugepages", ["bash", script, binary], timeout=300)
        script = os.path.join(ROOT, "tests", "placement", "numa-in-vm.sh")
        if os.path.exists(script):
            log("== NUMA placement on two emulated nodes under qemu")
            tap_suite(t, "numa-vm", ["bash", script], timeout=900)
    script = os.path.join(ROOT, "kmod-optional", "test-in-vm.sh")
    if "kmod" in want and os.path.exists(script):
        log("== kernel module under qemu")
        tap_suite(t, "kmod", ["bash", script], timeout=900)

    log("")
    log(f"== done in {time.monotonic() - started:.0f} s")
    for s in t.skips:
        log(f"SKIPPED {s}")
    for f in t.failures:
        log(f"FAILED {f}")
    log(f"{t.passed} passed, {t.failed} failed, {t.skipped} skipped")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
