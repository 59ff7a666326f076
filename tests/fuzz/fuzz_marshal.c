/* fuzz_marshal.c - libFuzzer harness for the CPython capture path: malformed
 * marshal data through _eternal.loads (the capture window) must behave like stock marshal.loads.
 * Inputs on which stock marshal itself crashes are skipped (see stock_survives). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

PyMODINIT_FUNC PyInit__eternal(void);

/* Stock marshal on malformed data may ask for gigabytes (a tuple of 2**31
 * items is allocated before its items are read): such a malloc returns NULL
 * (MemoryError) instead of paging in 16 GiB. Leaks are Python's own. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=1024";
}

/* Runs in the embedded interpreter. check() raises AssertionError when the
 * two answers differ; anything else it raises is a harness bug. */
static const char checker[] =
	"import marshal, math, _eternal\n"
	"def _fl(a, b):\n"
	"    if math.isnan(a) or math.isnan(b):\n"
	"        return math.isnan(a) and math.isnan(b)\n"
	"    return a.hex() == b.hex()\n"
	"def same(a, b, memo, depth=0):\n"
	"    if a is b:\n"
	"        return True\n"
	"    if type(a) is not type(b):\n"
	"        return False\n"
	"    if depth > 200 or (id(a), id(b)) in memo:\n"
	"        return True\n"
	"    memo.add((id(a), id(b)))\n"
	"    t = type(a)\n"
	"    if t is float:\n"
	"        return _fl(a, b)\n"
	"    if t is complex:\n"
	"        return _fl(a.real, b.real) and _fl(a.imag, b.imag)\n"
	"    if t in (tuple, list):\n"
	"        return len(a) == len(b) and all(same(x, y, memo, depth + 1) for x, y in zip(a, b))\n"
	"    if t is dict:\n"
	"        return len(a) == len(b) and all(same(x, y, memo, depth + 1) for x, y in zip(a.items(), b.items()))\n"
	"    if t in (set, frozenset):\n"
	"        return len(a) == len(b) and sorted(map(repr, a)) == sorted(map(repr, b))\n"
	"    if t is type(same.__code__):\n"
	"        return all(getattr(a, f) == getattr(b, f) for f in ('co_code', 'co_names', 'co_varnames',\n"
	"                   'co_freevars', 'co_cellvars', 'co_name', 'co_qualname', 'co_filename', 'co_flags',\n"
	"                   'co_argcount', 'co_posonlyargcount', 'co_kwonlyargcount', 'co_stacksize',\n"
	"                   'co_firstlineno', 'co_linetable', 'co_exceptiontable')) \\\n"
	"            and same(a.co_consts, b.co_consts, memo, depth + 1)\n"
	"    try:\n"
	"        return bool(a == b)\n"
	"    except Exception:\n"
	"        return repr(a) == repr(b)\n"
	"stats = {'same_ok': 0, 'same_err': 0}\n"
	"def check(data):\n"
	"    try:\n"
	"        want = marshal.loads(data)\n"
	"    except Exception as e:\n"
	"        want = e\n"
	"    try:\n"
	"        got = _eternal.loads(data)\n"
	"    except Exception as e:\n"
	"        got = e\n"
	"    if isinstance(want, BaseException) or isinstance(got, BaseException):\n"
	"        assert type(want) is type(got) and str(want) == str(got), (want, got)\n"
	"        stats['same_err'] += 1\n"
	"    else:\n"
	"        assert same(got, want, set()), ('different objects', got, want)\n"
	"        stats['same_ok'] += 1\n";

static PyObject *check_fn, *stock_loads;
static unsigned long n_inputs, n_stock_crash;

static void report(void)
{
	fprintf(stderr, "fuzz_marshal: %lu inputs, %lu skipped because stock marshal.loads itself crashed on them\n",
		n_inputs, n_stock_crash);
}

/* Stock marshal trusts its input: malformed bytecode crashes CPython itself
 * (e.g. in _PyCode_Quicken), which is documented and not ours to find. So
 * stock marshal first reads the input in a forked child; an input that kills
 * it is skipped. */
static int stock_survives(PyObject *b)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		abort();
	if (pid == 0) {
		PyObject *r;

		/* Die quietly: with ASan's and libFuzzer's handlers the child
		 * would print a report and write a crash-* artifact of its own. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		signal(SIGFPE, SIG_DFL);
		signal(SIGILL, SIG_DFL);
		signal(SIGABRT, SIG_DFL);
		r = PyObject_CallOneArg(stock_loads, b);

		_exit(r ? 0 : 2);
	}
	/* libFuzzer's -timeout alarm interrupts the wait: retry. */
	while (waitpid(pid, &status, 0) != pid)
		if (errno != EINTR)
			abort();
	/* Only a normal exit (0, or 2 for a Python exception) is a survival. */
	return WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 2);
}

static void init_python(void)
{
	PyObject *m, *mod, *enable, *kw, *r;

	PyImport_AppendInittab("_eternal", PyInit__eternal);
	Py_InitializeEx(0);
	mod = PyImport_ImportModule("_eternal");
	if (!mod) {
		PyErr_Print();
		abort();
	}
	/* Small tiers: the fallback to the heap is part of the path under test. */
	enable = PyObject_GetAttrString(mod, "enable");
	kw = Py_BuildValue("{snsn}", "sealed_reserve", (Py_ssize_t)(64 << 20), "cow_reserve", (Py_ssize_t)(64 << 20));
	r = enable && kw ? PyObject_Call(enable, PyTuple_New(0), kw) : NULL;
	if (!r) {
		PyErr_Print();
		abort();
	}
	Py_DECREF(r);
	m = PyImport_AddModule("__main__");
	r = PyRun_String(checker, Py_file_input, PyModule_GetDict(m), PyModule_GetDict(m));
	if (!r) {
		PyErr_Print();
		abort();
	}
	Py_DECREF(r);
	check_fn = PyObject_GetAttrString(m, "check");
	mod = PyImport_ImportModule("marshal");
	stock_loads = mod ? PyObject_GetAttrString(mod, "loads") : NULL;
	if (!check_fn || !stock_loads)
		abort();
	atexit(report);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	PyObject *b, *r;

	if (!check_fn)
		init_python();
	b = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)size);
	if (!b)
		abort();
	n_inputs++;
	if (!stock_survives(b)) {
		n_stock_crash++;
		Py_DECREF(b);
		return -1; /* not added to the corpus */
	}
	r = PyObject_CallOneArg(check_fn, b);
	if (!r) {
		if (PyErr_ExceptionMatches(PyExc_MemoryError) || PyErr_ExceptionMatches(PyExc_RecursionError)) {
			PyErr_Clear(); /* the comparison itself ran out: not a finding */
		} else {
			PyErr_Print();
			abort();
		}
	}
	Py_XDECREF(r);
	Py_XDECREF(b);
	return 0;
}
