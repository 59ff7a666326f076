# tests/glue/test_env_cli.py - the environment interface (ETERNAL=1, ETERNAL_MODE,
# ETERNAL_SEAL, ETERNAL_LOG), `python -m eternal run/report`, and the integrations.
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import GLUE, ROOT, run_py, glue_env

AUTOSTART = "import eternal._autostart\n"  # what eternal.pth does when ETERNAL=1

FORKER = AUTOSTART + '''
import os, eternal, json
print("BEFORE", eternal.is_enabled(), eternal.is_sealed(), flush=True)
pid = os.fork()
if pid == 0:
    st = eternal.stats()
    print("CHILD", eternal.is_sealed(), st["mode"], flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("PARENT", eternal.is_sealed(), eternal.stats()["mode"], flush=True)
'''


def test_env_first_fork_default():
    p = run_py(FORKER, env={"ETERNAL": "1"}, check=0)
    assert "BEFORE True False" in p.stdout
    assert "CHILD True strict" in p.stdout and "PARENT True strict" in p.stdout


def test_env_first_fork_trap_log(tmp_path):
    p = run_py(FORKER, env={"ETERNAL": "1", "ETERNAL_MODE": "trap", "ETERNAL_LOG": str(tmp_path)}, check=0)
    assert "CHILD True trap" in p.stdout and "PARENT True trap" in p.stdout
    assert list(tmp_path.glob("eternal-stats-*.json")), os.listdir(tmp_path)


def test_env_manual():
    p = run_py(FORKER, env={"ETERNAL": "1", "ETERNAL_SEAL": "manual"}, check=0)
    assert "CHILD False warmup" in p.stdout and "PARENT False warmup" in p.stdout


def test_env_off_when_unset():
    p = run_py(FORKER, env={"ETERNAL": "0"}, check=0)
    assert "BEFORE False False" in p.stdout


def test_env_bad_values():
    for var, val in (("ETERNAL_MODE", "bogus"), ("ETERNAL_SEAL", "later")):
        p = run_py(AUTOSTART + "import eternal; print('ENABLED', eternal.is_enabled())",
                   env={"ETERNAL": "1", var: val}, check=0)
        assert f"{var}={val!r}" in p.stderr and "ENABLED False" in p.stdout


def test_env_pth_hook_installed(tmp_path):
    """The real installer into a scratch site dir: its .pth line enables the
    glue at start-up when ETERNAL=1, and only then."""
    build = os.environ.get("ETERNAL_BUILD_DIR") or os.path.join(ROOT, "build")
    site = tmp_path / "site"
    inst = subprocess.run(["sh", os.path.join(ROOT, "cpython-glue", "install.sh"), build, "--site", str(site)],
                          capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr
    assert (site / "eternal.pth").exists()
    code = f"import site; site.addsitedir({str(site)!r}); import eternal; print(eternal.is_enabled())"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETERNAL", "PYTHON"))}
    for flag, want in (("1", "True"), ("0", "False")):
        p = subprocess.run([sys.executable, "-S", "-c", code], env={**env, "ETERNAL": flag},
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == want


def test_run_script(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text('import sys, eternal, json\n'
                      'print("ARGV", sys.argv)\n'
                      'print("STATE", eternal.is_enabled(), eternal.is_sealed(), eternal.stats()["mode"])\n'
                      'print("PRELOADED", eternal.tier_of(json.dumps.__code__))\n'
                      'sys.exit(3)\n')
    p = run_py(None, ["-m", "eternal", "run", "--preload", "json,email.parser", "--seal-now",
                      str(script), "a", "--b"])
    assert p.returncode == 3, p.stderr
    assert f"ARGV ['{script}', 'a', '--b']" in p.stdout
    assert "STATE True True strict" in p.stdout
    assert "PRELOADED cow" in p.stdout


def test_run_module_trap_log(tmp_path):
    pkg = tmp_path / "runme.py"
    pkg.write_text('import eternal, sys\nprint("MOD", __name__, sys.argv[1:], eternal.stats()["mode"])\n')
    log = tmp_path / "log"
    p = run_py(None, ["-m", "eternal", "run", "--mode", "trap", "--log", str(log), "--seal-now",
                      "-m", "runme", "x"], cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "MOD __main__ ['x'] trap" in p.stdout
    stats = list(log.glob("eternal-stats-*.json"))
    assert stats
    st = json.loads(stats[0].read_text())["stats"]
    assert st["mode"] == "trap" and st["trap_writes_sealed"] == 0
    r = run_py(None, ["-m", "eternal", "report", "--log", str(log)], check=0)
    assert "sealed" in r.stdout and "code" in r.stdout


def test_report_cli():
    p = run_py(None, ["-m", "eternal", "report", "--preload", "json,decimal"], check=0)
    assert "sealed  str" in p.stdout and "cow     code" in p.stdout and "trap_writes_sealed" in p.stdout
    p = run_py(None, ["-m", "eternal", "report", "--preload", "decimal", "--json"], check=0)
    assert json.loads(p.stdout)["cow_bytes"] > 0


@pytest.mark.parametrize("mode", ["strict", "trap"])
def test_multiprocessing_example(mode, tmp_path):
    p = run_py(None, ["-m", "eternal", "run", "--mode", mode, "--log", str(tmp_path),
                      os.path.join(GLUE, "examples", "mp_pool.py")], timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("table in the sealed tier") == 4
    if mode == "trap":
        recs = [json.loads(l) for f in tmp_path.glob("*.jsonl") for l in f.read_text().splitlines()]
        assert recs and not [r for r in recs if r["tier"] == "sealed"]
        pids = {r["pid"] for r in recs}
        assert len(pids) >= 2  # parent and workers (re-armed after fork) all logged


APP = '''
import json
def app(environ, start_response):
    body = json.dumps({"path": environ["PATH_INFO"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_gunicorn_conf(tmp_path):
    try:
        import importlib.util
        have = importlib.util.find_spec("gunicorn") is not None
    except Exception:
        have = False
    if not have:
        pytest.fail("gunicorn not importable (PYTHONPATH=/usr/lib/python3/dist-packages)")
    (tmp_path / "wsgiapp.py").write_text(APP)
    log = tmp_path / "log"
    port = _free_port()
    env = glue_env({"ETERNAL_MODE": "trap", "ETERNAL_LOG": str(log)})
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    g = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:eternal.gunicorn_conf", "-w", "2",
                          "-b", f"127.0.0.1:{port}", "wsgiapp:app"], env=env, cwd=str(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body == b'{"path": "/hello"}'
        for i in range(20):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/x{i}", timeout=2).read()
    finally:
        g.send_signal(signal.SIGTERM)
        try:
            out = g.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            g.kill()
            out = g.communicate()[0]
            raise AssertionError("gunicorn did not stop on SIGTERM:\n" + out[-3000:])
    assert "eternal: sealed (trap)" in out, out
    recs = [json.loads(l) for f in log.glob("*.jsonl") for l in f.read_text().splitlines()]
    assert not [r for r in recs if r["tier"] == "sealed"], [r for r in recs if r["tier"] == "sealed"][:3]
    assert len({r["pid"] for r in recs}) >= 2, "workers did not log (trap not re-armed after fork?)"


def test_patched_backend_routing():
    """On the patched interpreter the same user code goes to _eternal_patched."""
    import glob
    cands = sorted(glob.glob(os.path.expanduser("~/.cache/libeternal/builds/patched-3.13.5-*/prefix/bin/python3")),
                   key=os.path.getmtime, reverse=True)
    cands = [c for c in cands if ".tmp." not in c]
    if not cands:
        pytest.skip("patched interpreter not built (cpython-glue/patched/build.sh)")
    env = dict(os.environ, PYTHONPATH=GLUE)
    env.pop("ETERNAL", None)
    p = subprocess.run([cands[0], "-c", "import eternal, json\nprint(eternal.backend)\neternal.enable()\n"
                        "import decimal\neternal.seal('off')\nprint(eternal.stats()['mode'], eternal.is_sealed())"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["patched", "off", "True"], p.stdout


def test_env_ignored_under_E():
    env = glue_env({"ETERNAL": "1"})
    paths = env["PYTHONPATH"].split(os.pathsep)
    p = subprocess.run([sys.executable, "-E", "-c", f"import sys; sys.path[:0] = {paths!r}\n"
                        "import eternal._autostart, eternal; print('ENABLED', eternal.is_enabled())"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert "ENABLED False" in p.stdout, p.stdout + p.stderr
