/* _eternal_patched.c - libeternal inside a patched CPython 3.13: the hooks that
 * interning, marshal and code creation call, and the `_eternal_patched` module. */
#ifndef Py_BUILD_CORE_BUILTIN
#  define Py_BUILD_CORE_BUILTIN 1
#endif
#include "Python.h"
#include "pycore_code.h"          // _PyCode_New
#include "pycore_eternal.h"
#include "pycore_gc.h"            // PyGC_Head
#include "pycore_long.h"          // _PyLong_DigitCount
#include "pycore_object.h"        // _Py_SetImmortalUntracked
#include "pycore_pystate.h"       // _PyInterpreterState_GET
#include "pycore_unicodeobject.h" // _PyUnicode_Copy

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "eternal.h"

uintptr_t _Py_eternal_lo, _Py_eternal_hi;
int _Py_eternal_warm;
int _Py_eternal_code;

static eternal_region *region;
static struct eternal_region_opts open_opts = {.sz = sizeof open_opts, .name = "python"};

/* Block tags: stats() reports objects and bytes per tag, and the trap log
   names the type of the object a write hit. */
enum {
    TAG_OTHER = 0, TAG_STR, TAG_BYTES, TAG_INT, TAG_FLOAT, TAG_COMPLEX,
    TAG_TUPLE, TAG_FROZENSET, TAG_CODE, NTAGS
};
static const char *const tag_names[NTAGS] = {
    "other", "str", "bytes", "int", "float", "complex", "tuple", "frozenset", "code",
};

/* A child forked during warm-up would allocate in the same shared memfd as
   its parent: only the process that enabled keeps warming up. */
static void
atfork_child(void)
{
    _Py_eternal_warm = 0;
}

static int
region_open(void)
{
    uintptr_t lo[ETERNAL_NTIERS], hi[ETERNAL_NTIERS];
    int rc;

    if (region != NULL) {
        return 0;
    }
    rc = eternal_region_create(&open_opts, &region);
    if (rc < 0) {
        region = NULL;
        return rc;
    }
    for (int t = 0; t < ETERNAL_NTIERS; t++) {
        rc = eternal_tier_bounds(region, (enum eternal_tier)t, &lo[t], &hi[t]);
        if (rc < 0) {
            return rc;
        }
    }
    pthread_atfork(NULL, NULL, atfork_child);
    _Py_eternal_lo = lo[0] < lo[1] ? lo[0] : lo[1];
    _Py_eternal_hi = hi[0] > hi[1] ? hi[0] : hi[1];
    return 0;
}

/* Zeroed memory in @tier, or NULL when the tier is full (or sealed): callers
   fall back to the ordinary heap. */
static void *
region_alloc(enum eternal_tier tier, size_t size, int tag)
{
    void *p;
    if (region == NULL || eternal_alloc(region, tier, size, 0, (uint8_t)tag, &p) < 0) {
        return NULL;
    }
    return p;
}

/* ---- copies into the sealed tier ---------------------------------------- */

/* Every cache the interpreter fills lazily (hash, UTF-8) is filled on the heap
   original first and copied, so the region copy is never written again. */
static PyObject *
copy_str(PyObject *s)
{
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_COMPACT(s)) {
        return NULL;
    }
    if (PyObject_Hash(s) == -1) {
        PyErr_Clear();
        return NULL;
    }
    int ascii = PyUnicode_IS_ASCII(s);
    size_t head = ascii ? sizeof(PyASCIIObject) : sizeof(PyCompactUnicodeObject);
    size_t data = (size_t)(PyUnicode_GET_LENGTH(s) + 1) * PyUnicode_KIND(s);
    const char *utf8 = NULL;
    Py_ssize_t utf8_len = 0;
    if (!ascii) {
        utf8 = PyUnicode_AsUTF8AndSize(s, &utf8_len);
        if (utf8 == NULL) {   /* lone surrogates: no UTF-8 form exists */
            PyErr_Clear();
        }
    }
    size_t size = head + data + (utf8 ? (size_t)utf8_len + 1 : 0);
    PyObject *c = region_alloc(ETERNAL_TIER_SEALED, size, TAG_STR);
    if (c == NULL) {
        return NULL;
    }
    memcpy(c, s, head + data);
    _Py_SetImmortalUntracked(c);
    ((PyASCIIObject *)c)->state.interned = SSTATE_NOT_INTERNED;
    ((PyASCIIObject *)c)->state.statically_allocated = 0;
    if (!ascii) {
        PyCompactUnicodeObject *u = (PyCompactUnicodeObject *)c;
        u->utf8 = NULL;
        u->utf8_length = 0;
        if (utf8 != NULL) {
            u->utf8 = (char *)c + head + data;
            memcpy(u->utf8, utf8, (size_t)utf8_len + 1);
            u->utf8_length = utf8_len;
        }
    }
    return c;
}

/* A flat copy of a non-GC object of @size bytes. */
static PyObject *
copy_flat(PyObject *op, size_t size, int tag)
{
    PyObject *c = region_alloc(ETERNAL_TIER_SEALED, size, tag);
    if (c == NULL) {
        return NULL;
    }
    memcpy(c, op, size);
    _Py_SetImmortalUntracked(c);
    return c;
}

static int
all_immortal(PyObject *const *items, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (items[i] == NULL || !_Py_IsImmortal(items[i])) {
            return 0;
        }
    }
    return 1;
}

/* A GC object copied behind a zeroed PyGC_Head: zero means untracked, and
   nothing ever tracks it (PyObject_GC_Track ignores region objects). */
static PyObject *
copy_gc(PyObject *op, size_t size, size_t extra, int tag)
{
    char *block = region_alloc(ETERNAL_TIER_SEALED, sizeof(PyGC_Head) + size + extra, tag);
    if (block == NULL) {
        return NULL;
    }
    PyObject *c = (PyObject *)(block + sizeof(PyGC_Head));
    memcpy(c, op, size);
    _Py_SetImmortalUntracked(c);
    return c;
}

static PyObject *
copy_tuple(PyObject *t)
{
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    if (n == 0 || !all_immortal(((PyTupleObject *)t)->ob_item, n)) {
        return NULL;
    }
    /* Items are immortal: the copy needs no references of its own. */
    return copy_gc(t, _PyObject_VAR_SIZE(&PyTuple_Type, n), 0, TAG_TUPLE);
}

static PyObject *
copy_frozenset(PyObject *fs)
{
    PySetObject *so = (PySetObject *)fs;
    if (PySet_GET_SIZE(fs) == 0) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i <= so->mask; i++) {
        PyObject *k = so->table[i].key;
        if (k != NULL && !_Py_IsImmortal(k)) {
            return NULL;   /* marshal and freeze() never delete: no dummies */
        }
    }
    if (PyObject_Hash(fs) == -1) {
        PyErr_Clear();
        return NULL;
    }
    int small = so->table == so->smalltable;
    size_t table = small ? 0 : (size_t)(so->mask + 1) * sizeof(setentry);
    PyObject *c = copy_gc(fs, sizeof(PySetObject), table, TAG_FROZENSET);
    if (c == NULL) {
        return NULL;
    }
    PySetObject *cs = (PySetObject *)c;
    cs->weakreflist = NULL;
    if (small) {
        cs->table = cs->smalltable;
    }
    else {
        cs->table = (setentry *)((char *)c + sizeof(PySetObject));
        memcpy(cs->table, so->table, table);
    }
    return c;
}

static PyObject *
copy_eternal(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);

    if (_Py_IsImmortal(op) || _Py_IsEternal(op)) {
        return NULL;   /* singletons, statics, and what is already here */
    }
    if (tp == &PyUnicode_Type) {
        return copy_str(op);
    }
    if (tp == &PyBytes_Type) {
        if (PyObject_Hash(op) == -1) {
            PyErr_Clear();
            return NULL;
        }
        return copy_flat(op, offsetof(PyBytesObject, ob_sval) + PyBytes_GET_SIZE(op) + 1,
                         TAG_BYTES);
    }
    if (tp == &PyLong_Type) {
        Py_ssize_t nd = _PyLong_DigitCount((PyLongObject *)op);
        return copy_flat(op, offsetof(PyLongObject, long_value.ob_digit)
                         + sizeof(digit) * (size_t)(nd > 0 ? nd : 1), TAG_INT);
    }
    if (tp == &PyFloat_Type) {
        return copy_flat(op, sizeof(PyFloatObject), TAG_FLOAT);
    }
    if (tp == &PyComplex_Type) {
        return copy_flat(op, sizeof(PyComplexObject), TAG_COMPLEX);
    }
    if (tp == &PyTuple_Type) {
        return copy_tuple(op);
    }
    if (tp == &PyFrozenSet_Type) {
        return copy_frozenset(op);
    }
    return NULL;
}

PyObject *
_PyEternal_Copy(PyObject *op)
{
    if (!_Py_eternal_warm) {
        return NULL;
    }
    return copy_eternal(op);
}

PyObject *
_PyEternal_NewCode(Py_ssize_t size)
{
    PyObject *co = region_alloc(ETERNAL_TIER_COW, _PyObject_VAR_SIZE(&PyCode_Type, size),
                                TAG_CODE);
    if (co == NULL) {
        return NULL;
    }
    Py_SET_TYPE(co, &PyCode_Type);   /* static type: no reference to take */
    Py_SET_SIZE((PyVarObject *)co, size);
    _Py_SetImmortalUntracked(co);
    return co;
}

void
_PyEternal_InternSwap(PyInterpreterState *interp, PyObject *interned, PyObject **p)
{
    PyObject *s = *p, *c, *t = NULL;

    if (_Py_IsEternal(s)) {
        if (_Py_eternal_warm && _Py_IsMainInterpreter(interp)) {
            return;   /* marshal's copy: intern it as it is, still writable */
        }
        /* Sealed (or another interpreter's): intern a heap copy instead of
           writing the interned bits of the region string. */
        c = _PyUnicode_Copy(s);
        if (c == NULL) {
            PyErr_Clear();
            return;
        }
        Py_DECREF(s);
        *p = c;
        return;
    }
    if (!_Py_eternal_warm || !_Py_IsMainInterpreter(interp)) {
        return;
    }
    /* Copy only strings seen for the first time: a duplicate would waste
       region space, since region blocks are never given back. */
    if (PyDict_GetItemRef(interned, s, &t) != 0) {
        if (t == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(t);
        return;
    }
    c = copy_str(s);
    if (c != NULL) {
        Py_DECREF(s);
        *p = c;
    }
}

/* ---- enabling, sealing, start-up --------------------------------------- */

static int
enable(void)
{
    int rc = region_open();
    if (rc < 0) {
        return rc;
    }
    struct eternal_stats st = {.sz = sizeof st};
    rc = eternal_stats_get(region, &st);
    if (rc < 0) {
        return rc;
    }
    _Py_eternal_warm = st.state == ETERNAL_STATE_WARMUP;
    return 0;
}

static const char *const mode_names[] = {"off", "strict", "trap", "audit"};
static const char *const engine_names[] = {"auto", "precise", "thread", "mprotect"};

static int
name_index(const char *name, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* Trap log lines name the Python type and the field a write hit. Runs
   outside the signal handler but maybe without the GIL: reads memory only. */
static int
describe(const struct eternal_trap_event *ev, char *buf, size_t len, void *arg)
{
    (void)arg;
    const char *type = ev->tag < NTAGS ? tag_names[ev->tag] : "?";
    uint64_t off = ev->block_offset;
    const char *field = "?";
    int gc = ev->tag == TAG_TUPLE || ev->tag == TAG_FROZENSET;

    if (gc && off < sizeof(PyGC_Head)) {
        field = "gc_head";
    }
    else {
        off -= gc ? sizeof(PyGC_Head) : 0;
        if (off < sizeof(Py_ssize_t)) {
            field = "ob_refcnt";
        }
        else if (off < 2 * sizeof(void *)) {
            field = "ob_type";
        }
        else if (ev->tag == TAG_STR) {
            /* The block stays mapped and readable: its ascii bit says where data starts. */
            const PyASCIIObject *a = (const PyASCIIObject *)(uintptr_t)ev->block_start;
            size_t head = a == NULL || a->state.ascii ? sizeof(PyASCIIObject)
                                                      : sizeof(PyCompactUnicodeObject);
            field = off == offsetof(PyASCIIObject, length) ? "length"
                  : off == offsetof(PyASCIIObject, hash) ? "hash"
                  : off == offsetof(PyASCIIObject, state) ? "state (interned bits)"
                  : off >= head ? "data" : "utf8";
        }
        else if (ev->tag == TAG_BYTES) {
            /* ob_shash (deprecated, still the hash cache) sits before ob_sval */
            field = off + sizeof(Py_hash_t) == offsetof(PyBytesObject, ob_sval) ? "ob_shash"
                                                                                : "ob_sval";
        }
        else if (ev->tag == TAG_TUPLE) {
            field = "ob_item";
        }
        else if (ev->tag == TAG_FROZENSET) {
            field = off == offsetof(PySetObject, hash) ? "hash" : "table";
        }
    }
    return snprintf(buf, len, "%s+%llu %s", type, (unsigned long long)off, field);
}

static int
seal(int mode, int engine, const char *log_dir)
{
    struct eternal_trap_opts to = {
        .sz = sizeof to,
        .engine = (enum eternal_trap_engine)engine,
        .log_dir = log_dir,
        .describe = describe,
    };
    if (region == NULL) {
        return -EINVAL;
    }
    _Py_eternal_warm = 0;   /* from here on, nothing new goes into the region */
    return eternal_seal(region, (enum eternal_mode)mode, &to);
}

/* ETERNAL=1 at start-up follows the `eternal` package's contract:
   ETERNAL_SEAL=first-fork (default) seals right before the first os.fork(),
   manual leaves it to the program, startup seals at the end of start-up
   (after site and ETERNAL_PRELOAD, a comma-separated list of modules);
   ETERNAL_MODE, ETERNAL_ENGINE and ETERNAL_LOG say how. The variables are
   read only if ETERNAL=1 enabled the region at start-up. */
static int from_env;   /* ETERNAL=1 enabled the region at start-up */

static void
startup_warn(const char *what, int rc)
{
    fprintf(stderr, "_eternal_patched: %s: %s\n", what, strerror(-rc));
}

static int
env_seal(void)
{
    const char *mode = getenv("ETERNAL_MODE"), *engine = getenv("ETERNAL_ENGINE");
    const char *log = getenv("ETERNAL_LOG");
    int m = mode && *mode ? name_index(mode, mode_names, 4) : ETERNAL_MODE_STRICT;
    int e = engine && *engine ? name_index(engine, engine_names, 4) : 0;

    if (m < 0 || e < 0) {
        return -EINVAL;
    }
    return seal(m, e, log && *log ? log : NULL);
}

void
_PyEternal_InitMain(void)
{
    /* Like PYTHON* variables, ETERNAL* ones are ignored under -E and -I: a
       test that starts an isolated interpreter expects a fresh one. */
    const char *env = _Py_GetConfig()->use_environment ? getenv("ETERNAL") : NULL;
    if (env == NULL || strcmp(env, "1") != 0) {
        return;
    }
    int rc = enable();
    if (rc < 0) {
        startup_warn("ETERNAL=1: cannot create the region", rc);
    }
    from_env = rc == 0;
}

static PyObject *
ep_seal_before_fork(PyObject *self, PyObject *unused)
{
    if (_Py_eternal_warm) {
        int rc = env_seal();
        if (rc < 0) {
            startup_warn("sealing before fork", rc);
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef seal_before_fork_def = {
    "_seal_before_fork", ep_seal_before_fork, METH_NOARGS, NULL,
};

void
_PyEternal_AfterSite(void)
{
    const char *policy = getenv("ETERNAL_SEAL");

    if (!from_env || !_Py_eternal_warm) {
        return;
    }
    if (policy == NULL || *policy == '\0' || strcmp(policy, "first-fork") == 0) {
        PyObject *fn = PyCFunction_New(&seal_before_fork_def, NULL);
        PyObject *os = PyImport_ImportModule("os");
        PyObject *reg = os ? PyObject_GetAttrString(os, "register_at_fork") : NULL;
        PyObject *kw = fn ? Py_BuildValue("{sO}", "before", fn) : NULL;
        PyObject *args = PyTuple_New(0);
        PyObject *r = reg && kw && args ? PyObject_Call(reg, args, kw) : NULL;
        if (r == NULL) {
            PyErr_Clear();
            startup_warn("ETERNAL_SEAL=first-fork: cannot register the fork hook", -EINVAL);
        }
        Py_XDECREF(r);
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_XDECREF(reg);
        Py_XDECREF(os);
        Py_XDECREF(fn);
        return;
    }
    if (strcmp(policy, "manual") == 0) {
        return;
    }
    if (strcmp(policy, "startup") != 0) {
        startup_warn("ETERNAL_SEAL: expected first-fork, manual or startup", -EINVAL);
        return;
    }
    const char *preload = getenv("ETERNAL_PRELOAD");
    if (preload != NULL && *preload != '\0') {
        /* A module that fails to import is skipped, as if it were not listed. */
        char *list = strdup(preload), *save = NULL;
        for (char *m = list ? strtok_r(list, ",", &save) : NULL; m;
             m = strtok_r(NULL, ",", &save)) {
            PyObject *mod = PyImport_ImportModule(m);
            if (mod == NULL) {
                PyErr_Clear();
            }
            Py_XDECREF(mod);
        }
        free(list);
    }
    int rc = env_seal();
    if (rc < 0) {
        startup_warn("ETERNAL_SEAL=startup", rc);
    }
}

/* ---- the module ---------------------------------------------------------- */

static PyObject *
raise_rc(int rc, const char *what)
{
    errno = -rc;
    return PyErr_SetFromErrnoWithFilename(PyExc_OSError, what);
}

static PyObject *
ep_enable(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"sealed_reserve", "cow_reserve", "grow_step", NULL};
    Py_ssize_t sealed_reserve = 0, cow_reserve = 0, grow_step = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$nnn:enable", kwlist,
                                     &sealed_reserve, &cow_reserve, &grow_step)) {
        return NULL;
    }
    if (region != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "eternal is already enabled");
        return NULL;
    }
    open_opts.sealed_reserve = (size_t)sealed_reserve;
    open_opts.cow_reserve = (size_t)cow_reserve;
    open_opts.grow_step = (size_t)grow_step;
    int rc = enable();
    if (rc < 0) {
        return raise_rc(rc, "eternal_region_create");
    }
    Py_RETURN_NONE;
}

static int
region_stats(struct eternal_stats *st)
{
    memset(st, 0, sizeof *st);
    st->sz = sizeof *st;
    return region ? eternal_stats_get(region, st) : -EBADF;
}

static PyObject *
ep_is_enabled(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(region != NULL);
}

static PyObject *
ep_is_sealed(PyObject *self, PyObject *unused)
{
    static struct eternal_stats st;
    return PyBool_FromLong(region_stats(&st) == 0 && st.state != ETERNAL_STATE_WARMUP);
}

static PyObject *
ep_seal(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"mode", "log", "engine", NULL};
    const char *mode = "strict", *engine = "auto";
    PyObject *log = Py_None, *log_bytes = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|sOs:seal", kwlist, &mode, &log, &engine)) {
        return NULL;
    }
    int m = name_index(mode, mode_names, 4), e = name_index(engine, engine_names, 4);
    if (m < 0) {
        return PyErr_Format(PyExc_ValueError, "unknown mode '%s' (off, strict, trap, audit)",
                            mode);
    }
    if (e < 0) {
        return PyErr_Format(PyExc_ValueError, "unknown engine '%s'", engine);
    }
    if (region == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "eternal is not enabled");
        return NULL;
    }
    if (log != Py_None && !PyUnicode_FSConverter(log, &log_bytes)) {
        return NULL;
    }
    int rc = seal(m, e, log_bytes ? PyBytes_AS_STRING(log_bytes) : NULL);
    Py_XDECREF(log_bytes);
    if (rc < 0) {
        return raise_rc(rc, "eternal_seal");
    }
    Py_RETURN_NONE;
}

static int
set_u64(PyObject *d, const char *key, uint64_t v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    int rc = o ? PyDict_SetItemString(d, key, o) : -1;
    Py_XDECREF(o);
    return rc;
}

static int
set_str(PyObject *d, const char *key, const char *v)
{
    PyObject *o = PyUnicode_FromString(v);
    int rc = o ? PyDict_SetItemString(d, key, o) : -1;
    Py_XDECREF(o);
    return rc;
}

static int
set_obj(PyObject *d, const char *key, PyObject *o)
{
    int rc = o ? PyDict_SetItemString(d, key, o) : -1;
    Py_XDECREF(o);
    return rc;
}

/* The same keys as the stock glue's stats(), where they mean the same. */
static PyObject *
ep_stats(PyObject *self, PyObject *unused)
{
    static struct eternal_stats st;   /* 16 KiB: not on the stack; the GIL guards it */
    static const char *const tier_names[ETERNAL_NTIERS] = {"sealed", "cow"};
    PyObject *d = PyDict_New(), *objs = NULL, *bytes = NULL, *tiers = NULL;
    int have = region_stats(&st) == 0;
    int sealed = have && st.state != ETERNAL_STATE_WARMUP;

    if (d == NULL) {
        return NULL;
    }
    if (PyDict_SetItemString(d, "enabled", region ? Py_True : Py_False) < 0
        || PyDict_SetItemString(d, "sealed", sealed ? Py_True : Py_False) < 0
        || set_str(d, "mode", !have ? "none" : !sealed ? "warmup"
                              : (unsigned)st.mode < 4 ? mode_names[st.mode] : "?") < 0
        || set_str(d, "engine", sealed && st.mode == ETERNAL_MODE_TRAP
                                ? engine_names[(unsigned)st.engine % 4] : "") < 0
        || set_u64(d, "sealed_bytes", st.tier[ETERNAL_TIER_SEALED].used) < 0
        || set_u64(d, "cow_bytes", st.tier[ETERNAL_TIER_COW].used) < 0
        || set_u64(d, "sealed_committed", st.tier[ETERNAL_TIER_SEALED].committed) < 0
        || set_u64(d, "cow_committed", st.tier[ETERNAL_TIER_COW].committed) < 0
        || set_u64(d, "sealed_blocks", st.tier[ETERNAL_TIER_SEALED].blocks) < 0
        || set_u64(d, "cow_blocks", st.tier[ETERNAL_TIER_COW].blocks) < 0
        || set_u64(d, "alloc_failures", st.tier[0].alloc_failures + st.tier[1].alloc_failures) < 0
        || set_u64(d, "trap_writes_sealed", st.trap_writes[ETERNAL_TIER_SEALED]) < 0
        || set_u64(d, "trap_writes_cow", st.trap_writes[ETERNAL_TIER_COW]) < 0
        || set_u64(d, "trap_dropped", st.trap_dropped) < 0
        || set_u64(d, "warm", (uint64_t)_Py_eternal_warm) < 0
        || (objs = PyDict_New()) == NULL || (bytes = PyDict_New()) == NULL
        || (tiers = PyDict_New()) == NULL) {
        goto fail;
    }
    for (int t = 0; t < ETERNAL_NTIERS; t++) {
        PyObject *td = PyDict_New();
        if (set_obj(tiers, tier_names[t], Py_XNewRef(td)) < 0) {
            Py_XDECREF(td);
            goto fail;
        }
        Py_DECREF(td);
        for (int tag = 0; tag < NTAGS; tag++) {
            uint64_t nb = st.tag_blocks[t][tag], by = st.tag_bytes[t][tag];
            if (nb == 0) {
                continue;
            }
            /* Each type lives in one tier: the totals need no summing. */
            if (set_obj(td, tag_names[tag], Py_BuildValue("{sKsK}", "objects",
                        (unsigned long long)nb, "bytes", (unsigned long long)by)) < 0
                || set_u64(objs, tag_names[tag], nb) < 0
                || set_u64(bytes, tag_names[tag], by) < 0) {
                goto fail;
            }
        }
    }
    if (set_obj(d, "objects_by_type", objs) < 0 || set_obj(d, "bytes_by_type", bytes) < 0
        || set_obj(d, "by_tier", tiers) < 0) {
        objs = bytes = tiers = NULL;
        goto fail;
    }
    return d;
fail:
    Py_XDECREF(objs);
    Py_XDECREF(bytes);
    Py_XDECREF(tiers);
    Py_DECREF(d);
    return NULL;
}

/* freeze(): a deep copy in the sealed tier. Lists become tuples, sets
   frozensets, dicts read-only mappings (the dict under the mapping stays on
   the heap: dict lookups write version tags). @memo keeps shared parts
   shared; @path names where an unsupported object sits, e.g. root['a'][3]. */
struct freeze_ctx {
    PyObject *memo;    /* id(original) -> copy; also holds the originals alive */
    PyObject *path[64];
    int depth;
};

static PyObject *
freeze_path(struct freeze_ctx *fc)
{
    PyObject *p = PyUnicode_FromString("root");
    for (int i = 0; p != NULL && i < fc->depth && i < 64; i++) {
        PyObject *n = PyUnicode_FromFormat("%U[%R]", p, fc->path[i]);
        Py_SETREF(p, n);
    }
    return p;
}

static PyObject *freeze_obj(struct freeze_ctx *fc, PyObject *o);

static PyObject *
freeze_child(struct freeze_ctx *fc, PyObject *key, PyObject *o)
{
    if (fc->depth >= 64) {
        PyErr_SetString(PyExc_RecursionError, "freeze: nested deeper than 64 levels");
        return NULL;
    }
    fc->path[fc->depth++] = key;
    PyObject *r = freeze_obj(fc, o);
    fc->depth--;
    return r;
}

static PyObject *
freeze_container(struct freeze_ctx *fc, PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    PyObject *items = NULL, *r = NULL;

    if (tp == &PyTuple_Type || tp == &PyList_Type) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        if ((items = PyTuple_New(n)) == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *key = PyLong_FromSsize_t(i);
            PyObject *v = key ? freeze_child(fc, key, PySequence_Fast_GET_ITEM(o, i)) : NULL;
            Py_XDECREF(key);
            if (v == NULL) {
                Py_DECREF(items);
                return NULL;
            }
            PyTuple_SET_ITEM(items, i, v);
        }
    }
    else {   /* set or frozenset */
        PyObject *v, *it = PyObject_GetIter(o);
        if (it == NULL || (items = PyFrozenSet_New(NULL)) == NULL) {
            Py_XDECREF(it);
            return NULL;
        }
        while ((v = PyIter_Next(it)) != NULL) {
            PyObject *f = freeze_child(fc, v, v);
            Py_DECREF(v);
            if (f == NULL || PySet_Add(items, f) < 0) {
                Py_XDECREF(f);
                Py_DECREF(it);
                Py_DECREF(items);
                return NULL;
            }
            Py_DECREF(f);
        }
        Py_DECREF(it);
        if (PyErr_Occurred()) {
            Py_DECREF(items);
            return NULL;
        }
    }
    if (PyObject_Size(items) == 0) {
        return items;   /* empty: nothing to share */
    }
    r = copy_eternal(items);
    if (r == NULL && !PyErr_Occurred()) {
        /* An item that is a read-only mapping keeps its container on the heap. */
        r = Py_NewRef(items);
    }
    Py_DECREF(items);
    return r;
}

static PyObject *
freeze_obj(struct freeze_ctx *fc, PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    PyObject *r = NULL, *id;

    if (o == Py_None || o == Py_Ellipsis || PyBool_Check(o) || _Py_IsEternal(o)
        || (_Py_IsImmortal(o) && (tp == &PyUnicode_Type || tp == &PyLong_Type
                                  || tp == &PyBytes_Type || tp == &PyTuple_Type))) {
        return Py_NewRef(o);
    }
    if ((id = PyLong_FromVoidPtr(o)) == NULL) {
        return NULL;
    }
    if (PyDict_GetItemRef(fc->memo, id, &r) != 0) {
        PyObject *done = NULL;
        Py_DECREF(id);
        if (r == Py_None) {
            PyErr_SetString(PyExc_ValueError, "freeze: a container holds itself");
        }
        else if (r != NULL) {
            done = Py_NewRef(PyTuple_GET_ITEM(r, 1));
        }
        Py_XDECREF(r);
        return done;
    }
    /* Mark in progress (None) so that a cycle is reported, not followed. */
    if (PyDict_SetItem(fc->memo, id, Py_None) < 0) {
        Py_DECREF(id);
        return NULL;
    }
    if (tp == &PyUnicode_Type || tp == &PyBytes_Type || tp == &PyLong_Type
        || tp == &PyFloat_Type || tp == &PyComplex_Type) {
        r = copy_eternal(o);
        if (r == NULL && !PyErr_Occurred()) {
            PyErr_SetString(PyExc_MemoryError, "freeze: the sealed tier is full or sealed");
        }
    }
    else if (tp == &PyTuple_Type || tp == &PyList_Type || tp == &PySet_Type
             || tp == &PyFrozenSet_Type) {
        r = freeze_container(fc, o);
    }
    else if (tp == &PyDict_Type) {
        PyObject *k, *v, *d = PyDict_New();
        Py_ssize_t pos = 0;
        while (d != NULL && PyDict_Next(o, &pos, &k, &v)) {
            PyObject *fk = freeze_child(fc, k, k);
            PyObject *fv = fk ? freeze_child(fc, k, v) : NULL;
            if (fv == NULL || PyDict_SetItem(d, fk, fv) < 0) {
                Py_CLEAR(d);
            }
            Py_XDECREF(fk);
            Py_XDECREF(fv);
        }
        r = d ? PyDictProxy_New(d) : NULL;
        Py_XDECREF(d);
    }
    else {
        PyObject *where = freeze_path(fc);
        if (where != NULL) {
            PyErr_Format(PyExc_TypeError, "freeze: cannot freeze %U: %.100s (str, bytes, int, "
                         "float, complex, bool, None, tuple, list, set, frozenset and dict only)",
                         where, tp->tp_name);
            Py_DECREF(where);
        }
    }
    if (r != NULL) {
        PyObject *pair = PyTuple_Pack(2, o, r);   /* the original stays alive: ids stay unique */
        if (pair == NULL || PyDict_SetItem(fc->memo, id, pair) < 0) {
            Py_CLEAR(r);
        }
        Py_XDECREF(pair);
    }
    Py_DECREF(id);
    return r;
}

static PyObject *
ep_freeze(PyObject *self, PyObject *o)
{
    struct freeze_ctx fc = {.depth = 0};

    if (region == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "eternal is not enabled");
        return NULL;
    }
    if ((fc.memo = PyDict_New()) == NULL) {
        return NULL;
    }
    PyObject *r = freeze_obj(&fc, o);
    Py_DECREF(fc.memo);
    return r;
}

static PyObject *
ep_tier_of(PyObject *self, PyObject *o)
{
    if (region == NULL || !_Py_IsEternal(o)) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(eternal_tier_of(region, o) == ETERNAL_TIER_SEALED ? "sealed"
                                                                                : "cow");
}

/* One trapped write in Python terms. Called with the GIL, so the object the
   block holds may be read (never written: reprs of immortal leaves only). */
static PyObject *
trap_record(const struct eternal_trap_event *ev)
{
    char what[128], sym[256] = "";
    PyObject *repr = NULL, *code = NULL;
    int gc = ev->tag == TAG_TUPLE || ev->tag == TAG_FROZENSET;

    describe(ev, what, sizeof what, NULL);
    if (ev->pc != 0) {
        eternal_symbolize(ev->pc, sym, sizeof sym);
    }
    if (ev->block_start != 0 && ev->tag != TAG_OTHER && ev->tag < NTAGS) {
        PyObject *o = (PyObject *)(uintptr_t)(ev->block_start + (gc ? sizeof(PyGC_Head) : 0));
        if (ev->tag == TAG_CODE) {
            code = Py_NewRef(((PyCodeObject *)o)->co_qualname);
        }
        else if (ev->tag != TAG_TUPLE && ev->tag != TAG_FROZENSET) {
            repr = PyObject_Repr(o);
            if (repr != NULL && PyUnicode_GET_LENGTH(repr) > 60) {
                Py_SETREF(repr, PyUnicode_Substring(repr, 0, 60));
            }
            if (repr == NULL) {
                PyErr_Clear();
            }
        }
    }
    const char *field = strchr(what, ' ');
    PyObject *r = Py_BuildValue("{sisisKsssssKsssKsKsOsOsssK}",
        "pid", ev->pid, "tid", ev->tid, "seq", (unsigned long long)ev->seq,
        "tier", ev->tier == ETERNAL_TIER_SEALED ? "sealed" : "cow",
        "type", ev->tag < NTAGS ? tag_names[ev->tag] : "?",
        "addr", (unsigned long long)ev->addr,
        "field", field ? field + 1 : "?",
        "block_start", (unsigned long long)ev->block_start,
        "block_offset", (unsigned long long)ev->block_offset,
        "repr", repr ? repr : Py_None, "code", code ? code : Py_None,
        "symbol", sym, "pc", (unsigned long long)ev->pc);
    Py_XDECREF(repr);
    Py_XDECREF(code);
    return r;
}

static PyObject *
ep_trap_read(PyObject *self, PyObject *args)
{
    struct eternal_trap_event ev[64];
    Py_ssize_t max = 4096;
    PyObject *list;
    int n;

    if (!PyArg_ParseTuple(args, "|n:trap_read", &max) || (list = PyList_New(0)) == NULL) {
        return NULL;
    }
    while (region != NULL && PyList_GET_SIZE(list) < max) {
        size_t want = (size_t)(max - PyList_GET_SIZE(list));
        n = eternal_trap_read(region, ev, want < 64 ? want : 64);
        if (n < 0) {
            Py_DECREF(list);
            return raise_rc(n, "eternal_trap_read");
        }
        if (n == 0) {
            break;
        }
        for (int i = 0; i < n; i++) {
            PyObject *d = trap_record(&ev[i]);
            if (d == NULL || PyList_Append(list, d) < 0) {
                Py_XDECREF(d);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(d);
        }
    }
    return list;
}

static PyMethodDef ep_methods[] = {
    {"enable", (PyCFunction)(void (*)(void))ep_enable, METH_VARARGS | METH_KEYWORDS,
     "enable(*, sealed_reserve=0, cow_reserve=0, grow_step=0)\n--\n\nCreate the region and "
     "start the warm-up: strings interned and objects unmarshalled from now on go into it."},
    {"is_enabled", ep_is_enabled, METH_NOARGS, "is_enabled()\n--\n\n"},
    {"is_sealed", ep_is_sealed, METH_NOARGS, "is_sealed()\n--\n\n"},
    {"seal", (PyCFunction)(void (*)(void))ep_seal, METH_VARARGS | METH_KEYWORDS,
     "seal(mode='strict', log=None, engine='auto')\n--\n\nEnd the warm-up; mode is off, "
     "strict, trap or audit; log is a directory for the trap log."},
    {"stats", ep_stats, METH_NOARGS, "stats()\n--\n\nRegion statistics as a dict."},
    {"freeze", ep_freeze, METH_O,
     "freeze(obj)\n--\n\nA deep copy of obj in the sealed tier (warm-up only)."},
    {"tier_of", ep_tier_of, METH_O, "tier_of(obj)\n--\n\n'sealed', 'cow' or None."},
    {"trap_read", ep_trap_read, METH_VARARGS,
     "trap_read(max=4096)\n--\n\nDrain the trapped writes recorded so far, as dicts."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot ep_slots[] = {
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {0, NULL},
};

static struct PyModuleDef ep_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_eternal_patched",
    .m_doc = "libeternal linked into the interpreter (patched CPython).",
    .m_methods = ep_methods,
    .m_slots = ep_slots,
};

PyMODINIT_FUNC
PyInit__eternal_patched(void)
{
    return PyModuleDef_Init(&ep_module);
}
