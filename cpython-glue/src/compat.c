/* compat.c - the only file that reaches into CPython's internal structures
 * (free lists, interned dict, audit hooks), one branch per supported version. */
#define Py_BUILD_CORE_MODULE 1
#include "glue.h"

#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#include "internal/pycore_gc.h"
#if PY_VERSION_HEX >= 0x030D0000
#include "internal/pycore_freelist.h"
#endif

#include <string.h>

#if PY_VERSION_HEX < 0x030C0000 || PY_VERSION_HEX >= 0x030E0000
#error "the eternal glue supports CPython 3.12 and 3.13 only"
#endif
#ifdef Py_GIL_DISABLED
#error "free-threaded CPython is not supported (mimalloc heaps, no object-domain hook)"
#endif

_Static_assert(sizeof(PyGC_Head) == GLUE_GC_HEAD, "PyGC_Head size");

#if PY_VERSION_HEX >= 0x030D0000
#define FL_TUPLES (interp->object_state.freelists.tuples.items)
#define FL_TUPLES_N (interp->object_state.freelists.tuples.numfree)
#define FL_FLOATS (interp->object_state.freelists.floats.items)
#define FL_FLOATS_N (interp->object_state.freelists.floats.numfree)
#define FL_LISTS (interp->object_state.freelists.lists.items)
#define FL_LISTS_N (interp->object_state.freelists.lists.numfree)
#define FL_DICTS (interp->object_state.freelists.dicts.items)
#define FL_DICTS_N (interp->object_state.freelists.dicts.numfree)
#define FL_KEYS (interp->object_state.freelists.dictkeys.items)
#define FL_KEYS_N (interp->object_state.freelists.dictkeys.numfree)
#define KEYS_FREE(p) PyMem_Free(p)
#else
#define FL_TUPLES (interp->tuple.free_list)
#define FL_TUPLES_N (interp->tuple.numfree)
#define FL_FLOATS (interp->float_state.free_list)
#define FL_FLOATS_N (interp->float_state.numfree)
#define FL_LISTS (interp->list.free_list)
#define FL_LISTS_N (interp->list.numfree)
#define FL_DICTS (interp->dict_state.free_list)
#define FL_DICTS_N (interp->dict_state.numfree)
#define FL_KEYS (interp->dict_state.keys_free_list)
#define FL_KEYS_N (interp->dict_state.keys_numfree)
#define KEYS_FREE(p) PyObject_Free(p)
#endif

#define NTUPLES PyTuple_NFREELISTS
#define NARR PyDict_MAXFREELIST

/* Linked free lists (tuples, floats) are hidden by setting their head to NULL
 * and their count to the maximum: pops find nothing, pushes are refused and
 * go to tp_free. Array free lists (lists, dicts, dict keys) are hidden by a
 * count of zero: pops find nothing, pushes land in the array and are freed
 * on resume before the saved entries are put back. */
struct glue_freelists {
	PyInterpreterState *interp;
	PyTupleObject *tuples[NTUPLES];
	int ntuples[NTUPLES];
	PyFloatObject *floats;
	int nfloats;
	PyListObject *lists[PyList_MAXFREELIST];
	int nlists;
	PyDictObject *dicts[NARR];
	int ndicts;
	PyDictKeysObject *keys[NARR];
	int nkeys;
	int depth;
};

static struct glue_freelists saved;

struct glue_freelists *glue_freelists_suspend(void)
{
	PyInterpreterState *interp = PyInterpreterState_Get();
	struct glue_freelists *s = &saved;

	if (s->depth++ > 0)
		return s;
	s->interp = interp;
	for (int i = 0; i < NTUPLES; i++) {
		s->tuples[i] = FL_TUPLES[i];
		s->ntuples[i] = FL_TUPLES_N[i];
		FL_TUPLES[i] = NULL;
		FL_TUPLES_N[i] = PyTuple_MAXFREELIST;
	}
	s->floats = FL_FLOATS;
	s->nfloats = FL_FLOATS_N;
	FL_FLOATS = NULL;
	FL_FLOATS_N = PyFloat_MAXFREELIST;

	s->nlists = FL_LISTS_N;
	memcpy(s->lists, FL_LISTS, sizeof(s->lists));
	FL_LISTS_N = 0;
	s->ndicts = FL_DICTS_N;
	memcpy(s->dicts, FL_DICTS, sizeof(s->dicts));
	FL_DICTS_N = 0;
	s->nkeys = FL_KEYS_N;
	memcpy(s->keys, FL_KEYS, sizeof(s->keys));
	FL_KEYS_N = 0;
	return s;
}

void glue_freelists_resume(struct glue_freelists *s)
{
	PyInterpreterState *interp = s->interp;

	if (--s->depth > 0)
		return;
	/* Whatever was pushed meanwhile may be a region block: free it for
	 * real (region blocks are recycled by the allocator hook). */
	while (FL_LISTS_N > 0)
		PyObject_GC_Del(FL_LISTS[--FL_LISTS_N]);
	while (FL_DICTS_N > 0)
		PyObject_GC_Del(FL_DICTS[--FL_DICTS_N]);
	while (FL_KEYS_N > 0)
		KEYS_FREE(FL_KEYS[--FL_KEYS_N]);
	for (int i = 0; i < NTUPLES; i++) {
		/* Pushes were refused, but stay defensive. */
		PyTupleObject *p = FL_TUPLES[i];
		while (p) {
			PyTupleObject *q = p;
			p = (PyTupleObject *)p->ob_item[0];
			PyObject_GC_Del(q);
		}
		FL_TUPLES[i] = s->tuples[i];
		FL_TUPLES_N[i] = s->ntuples[i];
	}
	for (PyFloatObject *f = FL_FLOATS; f;) {
		PyFloatObject *next = (PyFloatObject *)Py_TYPE(f);
		PyObject_Free(f);
		f = next;
	}
	FL_FLOATS = s->floats;
	FL_FLOATS_N = s->nfloats;
	memcpy(FL_LISTS, s->lists, sizeof(s->lists));
	FL_LISTS_N = s->nlists;
	memcpy(FL_DICTS, s->dicts, sizeof(s->dicts));
	FL_DICTS_N = s->ndicts;
	memcpy(FL_KEYS, s->keys, sizeof(s->keys));
	FL_KEYS_N = s->nkeys;
}

int glue_interned_fixup(void)
{
#if PY_VERSION_HEX < 0x030D0000
	PyInterpreterState *interp = PyInterpreterState_Get();
	PyObject *d = interp->cached_objects.interned_strings;
	PyObject *copy;

	if (!d || !PyDict_Check(d) || !glue_in_region(((PyDictObject *)d)->ma_keys))
		return 0;
	copy = PyDict_Copy(d);
	if (!copy)
		return -1;
	if (glue_in_region(((PyDictObject *)copy)->ma_keys)) {
		Py_DECREF(copy);
		PyErr_SetString(PyExc_SystemError, "eternal: interned dict copy landed in the region");
		return -1;
	}
	interp->cached_objects.interned_strings = copy;
	Py_DECREF(d);
	return 1;
#else
	return 0;
#endif
}

void glue_intern_immortal(PyObject *s)
{
#if PY_VERSION_HEX >= 0x030D0000
	if (PyUnicode_CheckExact(s) && PyUnicode_CHECK_INTERNED(s) == SSTATE_INTERNED_MORTAL) {
		PyObject *t = Py_NewRef(s);
		_PyUnicode_InternImmortal(PyInterpreterState_Get(), &t);
		Py_DECREF(t);
	}
#else
	(void)s;
#endif
}

void glue_intern_now(PyObject *s)
{
	PyObject *t;

	if (!PyUnicode_CheckExact(s) || PyUnicode_CHECK_INTERNED(s))
		return;
	t = Py_NewRef(s);
#if PY_VERSION_HEX >= 0x030D0000
	_PyUnicode_InternImmortal(PyInterpreterState_Get(), &t);
#else
	PyUnicode_InternInPlace(&t);
#endif
	Py_DECREF(t);
}

bool glue_audit_hooks_present(void)
{
	PyInterpreterState *interp = PyInterpreterState_Get();

	if (_PyRuntime.audit_hooks.head)
		return true;
	return interp->audit_hooks && PyList_Check(interp->audit_hooks) &&
	       PyList_GET_SIZE(interp->audit_hooks) > 0;
}
