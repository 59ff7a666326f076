/* _eternal.c - the C half of the `eternal` package for stock CPython 3.12/3.13:
 * allocator hook, capture window around unmarshalling, clean-up, freeze, seal. */
#define PY_SSIZE_T_CLEAN
#include "glue.h"
#include "marshal.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#if PY_VERSION_HEX < 0x030C0000 || PY_VERSION_HEX >= 0x030E0000
#error "the eternal glue supports CPython 3.12 and 3.13 only"
#endif

eternal_region *glue_region;
uintptr_t glue_lo, glue_span;
uintptr_t glue_tier_lo[ETERNAL_NTIERS], glue_tier_hi[ETERNAL_NTIERS];

static PyMemAllocatorEx prev_obj;      /* the allocator we wrap, forever */
static int hook_installed;
static volatile int capture_active;    /* a window is open ... */
static pthread_t capture_owner;        /* ... on this thread */
static int sealed;
static PyObject *marshal_loads;        /* the real marshal.loads */

static struct {
	unsigned long long captures, capture_errors, passthrough, rejected;
	unsigned long long fallback_blocks, fallback_bytes;
	unsigned long long code_moved, code_moved_heap, interned_swaps;
	unsigned long long orphans, strays, sealed_frees_ignored, freezes, interned_extra, cache_purged, cow_tuples;
} C;

/* ------------------------------------------------------------------ */
/* Pointer map (open addressing), kept in libc memory so that building
 * it never allocates inside the window. */

struct pmap {
	uintptr_t *k, *v;
	size_t cap, n;
	unsigned bits; /* cap == 1 << bits */
	int oom;
};

static size_t pmap_slot(const struct pmap *m, uintptr_t k)
{
	/* Fibonacci hashing: the top bits of the product mix all of the key. */
	return (size_t)(((uint64_t)(k >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - m->bits));
}

static int pmap_grow(struct pmap *m)
{
	struct pmap n = { 0 };
	n.bits = m->cap ? m->bits + 1 : 10;
	n.cap = (size_t)1 << n.bits;
	n.k = calloc(n.cap, sizeof(uintptr_t));
	n.v = calloc(n.cap, sizeof(uintptr_t));
	if (!n.k || !n.v) {
		free(n.k);
		free(n.v);
		m->oom = 1;
		return -1;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->k[i])
			continue;
		size_t s = pmap_slot(&n, m->k[i]);
		while (n.k[s])
			s = (s + 1) & (n.cap - 1);
		n.k[s] = m->k[i];
		n.v[s] = m->v[i];
	}
	n.n = m->n;
	free(m->k);
	free(m->v);
	*m = n;
	return 0;
}

/* Size the map for about @n keys up front (rehashing while it fills up
 * costs more than the slack). */
static void pmap_reserve(struct pmap *m, size_t n)
{
	unsigned bits = 10;

	while (((size_t)1 << bits) < n * 2 && bits < 26)
		bits++;
	if (m->cap >= ((size_t)1 << bits))
		return;
	m->bits = bits - 1;
	m->cap = (size_t)1 << (bits - 1); /* pmap_grow doubles it */
	if (!m->k) {
		m->cap = 0;
		m->bits = bits - 1;
		m->k = NULL;
	}
	{
		struct pmap n2 = { 0 };
		n2.bits = bits;
		n2.cap = (size_t)1 << bits;
		n2.k = calloc(n2.cap, sizeof(uintptr_t));
		n2.v = calloc(n2.cap, sizeof(uintptr_t));
		if (!n2.k || !n2.v) {
			free(n2.k);
			free(n2.v);
			return;
		}
		free(m->k);
		free(m->v);
		*m = n2;
	}
}

/* 1 inserted, 0 already present, -1 out of memory. */
static int pmap_put(struct pmap *m, const void *key, uintptr_t v)
{
	uintptr_t k = (uintptr_t)key;
	size_t s;

	if ((m->n + 1) * 2 > m->cap && pmap_grow(m) < 0)
		return -1;
	s = pmap_slot(m, k);
	while (m->k[s]) {
		if (m->k[s] == k)
			return 0;
		s = (s + 1) & (m->cap - 1);
	}
	m->k[s] = k;
	m->v[s] = v;
	m->n++;
	return 1;
}

static uintptr_t *pmap_get(const struct pmap *m, const void *key)
{
	uintptr_t k = (uintptr_t)key;
	size_t s;

	if (!m->cap)
		return NULL;
	s = pmap_slot(m, k);
	while (m->k[s]) {
		if (m->k[s] == k)
			return &m->v[s];
		s = (s + 1) & (m->cap - 1);
	}
	return NULL;
}

static void pmap_free(struct pmap *m)
{
	free(m->k);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------------ */
/* Allocator hook. Permanent once installed; outside a window it only
 * range-checks frees and reallocs. */

static inline int capturing_here(void)
{
	return capture_active && pthread_equal(pthread_self(), capture_owner);
}

static void *region_alloc(size_t n)
{
	void *p;

	if (eternal_alloc(glue_region, ETERNAL_TIER_SEALED, n ? n : 1, 0, TAG_NONE, &p) == 0) {
		return p;
	}
	C.fallback_blocks++;
	C.fallback_bytes += n;
	return NULL;
}

static void *h_malloc(void *ctx, size_t n)
{
	(void)ctx;
	if (capturing_here()) {
		void *p = region_alloc(n);
		if (p)
			return p;
	}
	return prev_obj.malloc(prev_obj.ctx, n);
}

static void *h_calloc(void *ctx, size_t ne, size_t es)
{
	(void)ctx;
	if (capturing_here()) {
		void *p;
		if (es && ne > SIZE_MAX / es)
			return NULL;
		p = region_alloc(ne * es); /* region memory comes zeroed */
		if (p)
			return p;
	}
	return prev_obj.calloc(prev_obj.ctx, ne, es);
}

static void region_free(void *p)
{
	if (sealed && glue_in_sealed(p)) {
		C.sealed_frees_ignored++;
		return;
	}
	(void)eternal_free(glue_region, p);
}

static void h_free(void *ctx, void *p)
{
	(void)ctx;
	if (p && glue_in_region(p)) {
		region_free(p);
		return;
	}
	prev_obj.free(prev_obj.ctx, p);
}

static void *h_realloc(void *ctx, void *p, size_t n)
{
	if (p && glue_in_region(p)) {
		struct eternal_block b;
		void *q;
		if (eternal_block_find(glue_region, p, &b) < 0 || b.start != p)
			return NULL;
		if (n && n <= b.size && !(sealed && glue_in_sealed(p)))
			return p;
		q = h_malloc(ctx, n);
		if (!q)
			return NULL;
		memcpy(q, p, b.size < n ? b.size : n);
		h_free(ctx, p);
		return q;
	}
	if (!p && capturing_here())
		return h_malloc(ctx, n);
	return prev_obj.realloc(prev_obj.ctx, p, n);
}

static void install_hook(void)
{
	PyMemAllocatorEx mine = { NULL, h_malloc, h_calloc, h_realloc, h_free };

	if (hook_installed)
		return;
	PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &prev_obj);
	PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &mine);
	hook_installed = 1;
}

/* ------------------------------------------------------------------ */
/* Clean-up of what a window produced. */

static void immortalize(PyObject *o)
{
	o->ob_refcnt = _Py_IMMORTAL_REFCNT;
}

static void tag_pass(void);
static void sweep(void);

typedef struct {
	PyObject_HEAD
	PyObject *mapping;
} proxyobject; /* layout of CPython's mappingproxy */

struct walk {
	struct pmap seen;     /* object -> replacement (0 for none) */
	PyObject **objs;      /* every object reached, region or not */
	size_t n, cap;
	int bad;              /* a region object we cannot make eternal */
	const char *badtype;
	int allow_mapping;    /* freeze(): dicts and mappingproxies are ours */
};

static void walk_push(struct walk *w, PyObject *o)
{
	if (w->n == w->cap) {
		size_t nc = w->cap ? w->cap * 2 : 1024;
		PyObject **n = realloc(w->objs, nc * sizeof(*n));
		if (!n) {
			w->bad = 1;
			w->badtype = "(out of memory)";
			return;
		}
		w->objs = n;
		w->cap = nc;
	}
	w->objs[w->n++] = o;
}

/* Where an object was reached: code objects may only be the root or a
 * direct item of some code's co_consts (where move_code patches them). */
enum { CTX_ROOT, CTX_CONSTS, CTX_OTHER, CTX_SET };

static inline int leaf_type(PyTypeObject *t)
{
	return t == &PyUnicode_Type || t == &PyBytes_Type || t == &PyLong_Type || t == &PyFloat_Type ||
	       t == &PyComplex_Type || t == &PyBool_Type;
}

static void walk_fail(struct walk *w, const char *why)
{
	w->bad = 1;
	w->badtype = why;
}

static void walk(struct walk *w, PyObject *o, int ctx, int depth)
{
	PyTypeObject *t;
	int r;

	if (!o || w->bad)
		return;
	t = Py_TYPE(o);
	/* Heap leaves (pre-existing interned names, small ints, None...) are
	 * none of our business: skip them before touching the map. */
	if (!glue_in_region(o) && (leaf_type(t) || !(t == &PyTuple_Type || t == &PyFrozenSet_Type ||
						     t == &PyCode_Type)))
		return;
	if (t == &PyCode_Type && ctx != CTX_ROOT && ctx != CTX_CONSTS) {
		walk_fail(w, "code outside co_consts");
		return;
	}
	r = pmap_put(&w->seen, o, 0);
	if (r < 0) {
		walk_fail(w, "(out of memory)");
		return;
	}
	if (r == 0)
		return;
	if (depth > 20000) {
		walk_fail(w, "(too deep)");
		return;
	}
	walk_push(w, o);
	if (leaf_type(t))
		return;
	if (t == &PyTuple_Type) {
		int sub = ctx == CTX_CONSTS ? CTX_OTHER : ctx;
		for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(o); i++)
			walk(w, PyTuple_GET_ITEM(o, i), sub == CTX_ROOT ? CTX_OTHER : sub, depth + 1);
	} else if (t == &PyFrozenSet_Type) {
		Py_ssize_t pos = 0;
		PyObject *k;
		Py_hash_t h;
		while (_PySet_NextEntry(o, &pos, &k, &h))
			walk(w, k, CTX_SET, depth + 1);
	} else if (t == &PyCode_Type) {
		PyCodeObject *co = (PyCodeObject *)o;
		PyObject *consts = co->co_consts;
		/* co_consts' items are walked in the CONSTS context. */
		if (consts && Py_TYPE(consts) == &PyTuple_Type && pmap_put(&w->seen, consts, 0) == 1) {
			walk_push(w, consts);
			for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++)
				walk(w, PyTuple_GET_ITEM(consts, i), CTX_CONSTS, depth + 1);
		}
		walk(w, co->co_names, CTX_OTHER, depth + 1);
		walk(w, co->co_exceptiontable, CTX_OTHER, depth + 1);
		walk(w, co->co_localsplusnames, CTX_OTHER, depth + 1);
		walk(w, co->co_localspluskinds, CTX_OTHER, depth + 1);
		walk(w, co->co_filename, CTX_OTHER, depth + 1);
		walk(w, co->co_name, CTX_OTHER, depth + 1);
		walk(w, co->co_qualname, CTX_OTHER, depth + 1);
		walk(w, co->co_linetable, CTX_OTHER, depth + 1);
	} else if (w->allow_mapping && t == &PyDict_Type) {
		Py_ssize_t pos = 0;
		PyObject *k, *v;
		while (PyDict_Next(o, &pos, &k, &v)) {
			walk(w, k, CTX_OTHER, depth + 1);
			walk(w, v, CTX_OTHER, depth + 1);
		}
	} else if (w->allow_mapping && t == &PyDictProxy_Type) {
		walk(w, ((proxyobject *)o)->mapping, CTX_OTHER, depth + 1);
	} else {
		walk_fail(w, t->tp_name);
	}
}

/* Short strings (names, file names, keys) are interned when sealing: a
 * region str interned after sealing would get its state written (3.13
 * interns every new code object's co_filename, setattr interns names). */
#define INTERN_MAX 64

struct strlist {
	PyObject **v;
	size_t n, cap;
};

static int intern_cb(const struct eternal_block *b, void *arg)
{
	struct strlist *l = arg;
	PyObject *o = b->start;

	if (b->tag != TAG_STR || Py_TYPE(o) != &PyUnicode_Type ||
	    PyUnicode_GET_LENGTH(o) > INTERN_MAX || PyUnicode_CHECK_INTERNED(o))
		return 0;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 4096;
		PyObject **n = realloc(l->v, nc * sizeof(*n));
		if (!n)
			return 1;
		l->v = n;
		l->cap = nc;
	}
	l->v[l->n++] = o;
	return 0;
}

/* Collected first, interned after the walk: interning may free a dict
 * table, and the walk must not see the region change under it. */
static void intern_short_strings(void)
{
	struct strlist l = { 0 };

	(void)eternal_block_foreach(glue_region, ETERNAL_TIER_SEALED, intern_cb, &l);
	for (size_t i = 0; i < l.n; i++)
		glue_intern_now(l.v[i]);
	C.interned_extra += l.n;
	free(l.v);
}

static void untrack(PyObject *o)
{
	if (PyObject_GC_IsTracked(o))
		PyObject_GC_UnTrack(o);
}

/* Make one region object eternal: hash and UTF-8 now, immortal, untracked. */
static void process_leaf(struct walk *w, PyObject *o)
{
	PyTypeObject *t = Py_TYPE(o);

	if (t == &PyUnicode_Type) {
		glue_intern_immortal(o);
		(void)PyObject_Hash(o);
		if (!PyUnicode_IS_ASCII(o)) {
			if (!PyUnicode_AsUTF8AndSize(o, NULL)) {
				PyErr_Clear(); /* lone surrogates: no UTF-8 form */
			} else {
				void *u = ((PyCompactUnicodeObject *)o)->utf8;
				if (u && glue_in_region(u)) {
					(void)eternal_block_set_tag(glue_region, u, TAG_UTF8);
					(void)pmap_put(&w->seen, u, 0);
				}
			}
		}
		immortalize(o);
	} else if (t == &PyBytes_Type) {
		(void)PyObject_Hash(o);
		immortalize(o);
	} else if (t == &PyLong_Type) {
		immortalize(o);
	} else if (t == &PyFloat_Type) {
		immortalize(o);
	} else if (t == &PyComplex_Type) {
		immortalize(o);
	} else if (t == &PyTuple_Type) {
		untrack(o);
		immortalize(o);
	} else if (t == &PyFrozenSet_Type) {
		if (PyObject_Hash(o) == -1)
			PyErr_Clear();
		untrack(o);
		immortalize(o);
	} else if (t == &PyDict_Type) {
		void *keys = ((PyDictObject *)o)->ma_keys;
		untrack(o);
		immortalize(o);
		if (glue_in_region(keys)) {
			(void)eternal_block_set_tag(glue_region, keys, TAG_DICTKEYS);
			(void)pmap_put(&w->seen, keys, 0);
		}
	} else if (t == &PyDictProxy_Type) {
		untrack(o);
		immortalize(o);
	}
}

/* Code objects are written by the interpreter (quickening, caches): move
 * them from the sealed tier to the cow tier and patch the references. */
#if PY_VERSION_HEX >= 0x030D0000
/* A copy of sealed tuple @t in the cow tier (the same copy for every code
 * object that shares it), or @t itself if it is not in the sealed tier. */
static PyObject *cow_tuple(struct walk *w, PyObject *t)
{
	uintptr_t *r;
	size_t size;
	void *p;

	if (!t || Py_TYPE(t) != &PyTuple_Type || !glue_in_sealed(t))
		return t;
	r = pmap_get(&w->seen, t);
	if (r && *r)
		return (PyObject *)*r;
	size = GLUE_GC_HEAD + _PyObject_VAR_SIZE(&PyTuple_Type, Py_SIZE(t));
	if (eternal_alloc(glue_region, ETERNAL_TIER_COW, size, 0, TAG_TUPLE, &p) < 0)
		return t;
	memcpy(p, (char *)t - GLUE_GC_HEAD, size);
	memset(p, 0, GLUE_GC_HEAD); /* untracked */
	immortalize((PyObject *)((char *)p + GLUE_GC_HEAD));
	if (r)
		*r = (uintptr_t)((char *)p + GLUE_GC_HEAD);
	C.cow_tuples++;
	return (PyObject *)((char *)p + GLUE_GC_HEAD);
}

static PyObject *mapped_tuple(struct walk *w, PyObject *t)
{
	uintptr_t *r;
	if (!t || Py_TYPE(t) != &PyTuple_Type || !glue_in_sealed(t))
		return t;
	r = pmap_get(&w->seen, t);
	return r && *r ? (PyObject *)*r : t;
}

/* 3.13's code constructor (code.replace(), types.CodeType()) re-interns
 * the names tuples it is given by storing every slot back, changed or not:
 * a sealed tuple of names handed to it would be written. So tuples of
 * strings live in the cow tier: copied there, every reference the walk
 * found patched (tuple items, frozenset keys, code fields), old blocks
 * released. */
static PyObject *cow_name_tuples(struct walk *w, PyObject *root)
{
	size_t moved = 0;

	for (size_t i = 0; i < w->n; i++) {
		PyObject *o = w->objs[i];
		Py_ssize_t n;
		if (Py_TYPE(o) != &PyTuple_Type || !glue_in_sealed(o) || !(n = PyTuple_GET_SIZE(o)))
			continue;
		for (Py_ssize_t j = 0; j < n && o; j++)
			if (Py_TYPE(PyTuple_GET_ITEM(o, j)) != &PyUnicode_Type)
				o = NULL;
		if (o && cow_tuple(w, o) != o)
			moved++;
	}
	if (!moved)
		return root;
	for (size_t i = 0; i < w->n; i++) {
		PyObject *o = w->objs[i];
		PyTypeObject *t = Py_TYPE(o);
		if (t == &PyTuple_Type) {
			for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(o); j++) {
				PyObject *it = PyTuple_GET_ITEM(o, j);
				PyObject *nw = mapped_tuple(w, it);
				if (nw != it)
					PyTuple_SET_ITEM(o, j, nw);
			}
		} else if (t == &PyFrozenSet_Type) {
			PySetObject *so = (PySetObject *)o;
			for (Py_ssize_t j = 0; j <= so->mask; j++) {
				PyObject *k = so->table[j].key;
				if (k)
					so->table[j].key = mapped_tuple(w, k);
			}
		} else if (t == &PyCode_Type) {
			uintptr_t *r = pmap_get(&w->seen, o);
			PyCodeObject *cos[2] = { (PyCodeObject *)o, r && *r ? (PyCodeObject *)*r : NULL };
			for (int k = 0; k < 2; k++) {
				PyCodeObject *co = cos[k];
				if (!co)
					continue;
				co->co_names = mapped_tuple(w, co->co_names);
				co->co_localsplusnames = mapped_tuple(w, co->co_localsplusnames);
				co->co_consts = mapped_tuple(w, co->co_consts);
			}
		}
	}
	root = mapped_tuple(w, root);
	/* Everything that pointed at the old copies was patched above. */
	for (size_t i = 0; i < w->n; i++) {
		PyObject *o = w->objs[i];
		if (Py_TYPE(o) == &PyTuple_Type && glue_in_sealed(o) && mapped_tuple(w, o) != o)
			(void)eternal_free(glue_region, (char *)o - GLUE_GC_HEAD);
	}
	return root;
}
#endif

static PyObject *cow_names(struct walk *w, PyObject *root)
{
#if PY_VERSION_HEX >= 0x030D0000
	if (!w->allow_mapping)
		root = cow_name_tuples(w, root);
#else
	(void)w;
#endif
	return root;
}

static PyObject *move_code(struct walk *w, PyObject *root)
{
	PyObject **old = NULL;
	size_t nold = 0, capold = 0;
	int any_code = 0;

	for (size_t i = 0; i < w->n; i++) {
		PyObject *o = w->objs[i];
		size_t size;
		void *p;

		if (Py_TYPE(o) != &PyCode_Type)
			continue;
		any_code = 1;
		if (!glue_in_sealed(o))
			continue;
		size = _PyObject_VAR_SIZE(Py_TYPE(o), Py_SIZE(o));
		if (eternal_alloc(glue_region, ETERNAL_TIER_COW, size, 0, TAG_CODE, &p) < 0) {
			p = prev_obj.malloc(prev_obj.ctx, size);
			if (!p)
				continue; /* stays in the sealed tier: reported as code there */
			C.code_moved_heap++;
		} else {
			C.code_moved++;
		}
		memcpy(p, o, size);
		immortalize((PyObject *)p);
		*pmap_get(&w->seen, o) = (uintptr_t)p;
		if (nold == capold) {
			size_t nc = capold ? capold * 2 : 64;
			PyObject **n2 = realloc(old, nc * sizeof(*old));
			if (!n2)
				continue; /* the old block is merely not recycled */
			old = n2;
			capold = nc;
		}
		old[nold++] = o;
	}
	(void)any_code;
	if (!nold)
		return cow_names(w, root);
	/* Code objects live only as the root or in some code's co_consts (the
	 * walk refused anything else), so those are the slots to patch. */
	for (size_t i = 0; i < w->n; i++) {
		PyObject *o = w->objs[i], *consts;
		if (Py_TYPE(o) != &PyCode_Type)
			continue;
		consts = ((PyCodeObject *)o)->co_consts;
		for (Py_ssize_t j = 0; consts && j < PyTuple_GET_SIZE(consts); j++) {
			PyObject *it = PyTuple_GET_ITEM(consts, j);
			uintptr_t *r;
			if (Py_TYPE(it) == &PyCode_Type && (r = pmap_get(&w->seen, it)) && *r)
				PyTuple_SET_ITEM(consts, j, (PyObject *)*r);
		}
	}
	{
		uintptr_t *r = pmap_get(&w->seen, root);
		if (r && *r)
			root = (PyObject *)*r;
	}
	root = cow_names(w, root);
	/* The old copies are referenced by nobody now: release the blocks. */
	for (size_t i = 0; i < nold; i++)
		(void)eternal_free(glue_region, old[i]);
	free(old);
	return root;
}

/* Window open: make everything @root reaches eternal. Returns the new root
 * (code may have moved), or NULL with *reject set if the result holds an
 * object we cannot keep (the caller drops it and loads again outside). */
static PyObject *finish(struct walk *w, PyObject *root, int *reject)
{
	walk(w, root, CTX_ROOT, 0);
	if (w->bad) {
		*reject = 1;
		return NULL;
	}
	for (size_t i = 0; i < w->n; i++)
		if (glue_in_region(w->objs[i]) && Py_TYPE(w->objs[i]) != &PyCode_Type)
			process_leaf(w, w->objs[i]);
	return move_code(w, root);
}

/* A live block nobody accounts for is an object something leaked (stock
 * marshal leaks parts of a truncated code object) or holds. If it is an
 * object we know, make it inert: immortal, and out of the GC's lists, whose
 * collections would otherwise write its header after sealing. */
static void neutralize(void *p, size_t size)
{
	PyTypeObject *t = size >= 16 ? *(PyTypeObject **)((char *)p + 8) : NULL;
	PyObject *o = NULL;

	if (t == &PyUnicode_Type || t == &PyBytes_Type || t == &PyLong_Type || t == &PyFloat_Type ||
	    t == &PyComplex_Type || t == &PyCode_Type) {
		o = p;
	} else if (size >= GLUE_GC_HEAD + 16) {
		t = *(PyTypeObject **)((char *)p + GLUE_GC_HEAD + 8);
		if (t == &PyTuple_Type || t == &PyFrozenSet_Type || t == &PyList_Type ||
		    t == &PyDict_Type || t == &PySet_Type) {
			o = (PyObject *)((char *)p + GLUE_GC_HEAD);
			untrack(o);
		}
	}
	if (o && Py_REFCNT(o) > 0)
		immortalize(o);
}

struct window {
	int gc_was;
	struct glue_freelists *fl;
};

static void window_open(struct window *win)
{
	win->gc_was = PyGC_Disable();
	win->fl = glue_freelists_suspend();
	capture_owner = pthread_self();
	capture_active = 1;
}

static void window_close(struct window *win, struct walk *w)
{
	capture_active = 0;
	glue_freelists_resume(win->fl);
	{
		int r = glue_interned_fixup();
		if (r > 0)
			C.interned_swaps++;
		else if (r < 0)
			PyErr_Clear();
	}
	if (win->gc_was)
		PyGC_Enable();
}

/* Run @call(@arg) inside a capture window and clean up what it made before
 * any Python code runs again. *reject is set when the call failed (its
 * exception was built in the region: dropped here) or its result was refused;
 * the caller then does the work again outside the window, so errors surface
 * exactly as without the glue. @expect sizes the seen-set (0: default). */
static PyObject *capture_call(PyObject *(*call)(void *), void *arg, size_t expect, int *reject)
{
	struct window win;
	struct walk w = { 0 };
	PyObject *res;

	*reject = 0;
	if (expect)
		pmap_reserve(&w.seen, expect);
	C.captures++;
	window_open(&win);
	res = call(arg);
	if (!res) {
		PyObject *exc = PyErr_GetRaisedException();
		Py_XDECREF(exc);
		C.capture_errors++;
		*reject = 1;
	} else {
		PyObject *r2 = finish(&w, res, reject);
		if (*reject) {
			Py_DECREF(res);
			C.rejected++;
		}
		res = r2;
	}
	window_close(&win, &w);
	pmap_free(&w.seen);
	free(w.objs);
	return res;
}

struct load_arg {
	const char *buf;
	Py_ssize_t len;
};

static PyObject *load_call(void *arg)
{
	struct load_arg *a = arg;

	return PyMarshal_ReadObjectFromString(a->buf, a->len);
}

static PyObject *capture_load(const char *buf, Py_ssize_t len)
{
	struct load_arg a = { buf, len };
	int reject;
	/* About one object per 24 bytes of marshal data in .pyc files. */
	PyObject *res = capture_call(load_call, &a, (size_t)len / 24, &reject);

	if (reject)
		res = PyMarshal_ReadObjectFromString(buf, len);
	return res;
}

static int capture_possible(void)
{
	return glue_region && !sealed && !capture_active && !PyErr_Occurred() &&
	       !glue_audit_hooks_present();
}

PyDoc_STRVAR(loads_doc, "loads(bytes) -> object\n\nmarshal.loads with the capture window open "
	     "(what the import shim calls).");

static PyObject *g_loads(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	Py_buffer view;
	PyObject *res;

	(void)self;
	if (nargs != 1 || (kwnames && PyTuple_GET_SIZE(kwnames)) || !capture_possible())
		goto stock;
	if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
		PyErr_Clear();
		goto stock;
	}
	res = capture_load(view.buf, view.len);
	PyBuffer_Release(&view);
	return res;
stock:
	C.passthrough++;
	return PyObject_Vectorcall(marshal_loads, args, (size_t)nargs, kwnames);
}

PyDoc_STRVAR(recapture_doc, "recapture(code) -> code\n\nRound-trip a freshly compiled code object "
	     "through marshal inside the window, so source-compiled modules get the .pyc treatment.");

static PyObject *g_recapture(PyObject *self, PyObject *code)
{
	PyObject *data, *res;

	(void)self;
	if (!PyCode_Check(code) || !capture_possible())
		return Py_NewRef(code);
	data = PyMarshal_WriteObjectToString(code, Py_MARSHAL_VERSION);
	if (!data) {
		PyErr_Clear();
		return Py_NewRef(code);
	}
	res = capture_load(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
	Py_DECREF(data);
	if (!res) {
		PyErr_Clear();
		return Py_NewRef(code);
	}
	return res;
}

PyDoc_STRVAR(compile_doc, "compile(source, path, optimize=-1) -> code or None\n\n"
	     "compile(source, path, 'exec', dont_inherit=True) inside the capture window, so names the\n"
	     "compiler interns are region copies. None: not captured (the caller compiles normally;\n"
	     "errors and warnings then surface exactly as without the glue).");

struct compile_arg {
	PyObject *fn, *args, *kw;
};

static PyObject *compile_call(void *arg)
{
	struct compile_arg *a = arg;

	return PyObject_Call(a->fn, a->args, a->kw);
}

static PyObject *g_compile(PyObject *self, PyObject *args)
{
	PyObject *source, *path, *builtins, *fn, *cargs = NULL, *kw = NULL, *res = NULL;
	int optimize = -1, reject = 0;

	(void)self;
	if (!PyArg_ParseTuple(args, "OO|i:compile", &source, &path, &optimize))
		return NULL;
	if (!capture_possible())
		Py_RETURN_NONE;
	builtins = PyEval_GetBuiltins();
	fn = builtins ? PyDict_GetItemString(builtins, "compile") : NULL;
	if (!fn)
		Py_RETURN_NONE;
	/* Arguments are built outside the window. */
	cargs = Py_BuildValue("(OOs)", source, path, "exec");
	kw = Py_BuildValue("{sOsi}", "dont_inherit", Py_True, "optimize", optimize);
	if (!cargs || !kw)
		goto out;
	{
		struct compile_arg a = { fn, cargs, kw };

		res = capture_call(compile_call, &a, 0, &reject);
	}
	if (reject)
		res = Py_NewRef(Py_None);
out:
	Py_XDECREF(cargs);
	Py_XDECREF(kw);
	return res;
}

static PyObject *g_capture_possible(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	return PyBool_FromLong(capture_possible());
}

/* ------------------------------------------------------------------ */
/* freeze() */

enum { P_INDEX, P_KEY, P_KEYOF, P_ELEM };

struct pathel {
	int kind;
	Py_ssize_t index;
	PyObject *key; /* borrowed from the caller's object, alive throughout */
};

struct fz {
	struct pmap memo;
	struct pathel *path, *errpath;
	size_t depth, cap, errdepth;
	PyTypeObject *badtype; /* our TypeError: unsupported type */
	int toodeep;
};

static int fz_push(struct fz *f, int kind, Py_ssize_t index, PyObject *key)
{
	if (f->depth == f->cap) {
		size_t nc = f->cap ? f->cap * 2 : 64;
		struct pathel *n = realloc(f->path, nc * sizeof(*n));
		if (!n)
			return -1;
		f->path = n;
		f->cap = nc;
	}
	f->path[f->depth++] = (struct pathel){ kind, index, key };
	return 0;
}

static void fz_fail(struct fz *f, PyTypeObject *t, int toodeep)
{
	f->badtype = t;
	f->toodeep = toodeep;
	f->errpath = malloc((f->depth + 1) * sizeof(*f->errpath));
	if (f->errpath) {
		memcpy(f->errpath, f->path, f->depth * sizeof(*f->path));
		f->errdepth = f->depth;
	}
}

static PyObject *fz_copy(struct fz *f, PyObject *o)
{
	PyTypeObject *t = Py_TYPE(o);
	uintptr_t *m;
	PyObject *r;

	if (o == Py_None || o == Py_True || o == Py_False || glue_in_sealed(o))
		return Py_NewRef(o);
	if ((m = pmap_get(&f->memo, o)))
		return Py_NewRef((PyObject *)*m);
	if (f->depth > 5000) {
		fz_fail(f, t, 1);
		return NULL;
	}
	if (t == &PyUnicode_Type) {
		r = PyUnicode_FromKindAndData(PyUnicode_KIND(o), PyUnicode_DATA(o), PyUnicode_GET_LENGTH(o));
	} else if (t == &PyBytes_Type) {
		r = PyBytes_FromStringAndSize(PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
	} else if (t == &PyLong_Type) {
		r = _PyLong_Copy((PyLongObject *)o);
	} else if (t == &PyFloat_Type) {
		r = PyFloat_FromDouble(PyFloat_AS_DOUBLE(o));
	} else if (t == &PyComplex_Type) {
		r = PyComplex_FromCComplex(((PyComplexObject *)o)->cval);
	} else if (t == &PyTuple_Type || t == &PyList_Type) {
		Py_ssize_t n = Py_SIZE(o);
		r = PyTuple_New(n);
		if (!r)
			return NULL;
		if (n && pmap_put(&f->memo, o, (uintptr_t)r) < 0)
			goto nomem;
		for (Py_ssize_t i = 0; i < n; i++) {
			PyObject *it = t == &PyTuple_Type ? PyTuple_GET_ITEM(o, i) : PyList_GET_ITEM(o, i);
			PyObject *c;
			if (fz_push(f, P_INDEX, i, NULL) < 0)
				goto nomem;
			c = fz_copy(f, it);
			f->depth--;
			if (!c) {
				Py_DECREF(r);
				return NULL;
			}
			PyTuple_SET_ITEM(r, i, c);
		}
		return r;
	} else if (t == &PyFrozenSet_Type) {
		Py_ssize_t pos = 0, i = 0;
		PyObject *k, *tmp;
		Py_hash_t h;
		tmp = PyTuple_New(PySet_GET_SIZE(o));
		if (!tmp)
			return NULL;
		while (_PySet_NextEntry(o, &pos, &k, &h)) {
			PyObject *c;
			if (fz_push(f, P_ELEM, 0, k) < 0) {
				Py_DECREF(tmp);
				return PyErr_NoMemory();
			}
			c = fz_copy(f, k);
			f->depth--;
			if (!c) {
				Py_DECREF(tmp);
				return NULL;
			}
			PyTuple_SET_ITEM(tmp, i++, c);
		}
		r = PyFrozenSet_New(tmp);
		Py_DECREF(tmp);
	} else if (t == &PyDict_Type) {
		Py_ssize_t pos = 0;
		PyObject *k, *v, *d = PyDict_New();
		if (!d)
			return NULL;
		r = PyDictProxy_New(d);
		Py_DECREF(d);
		if (!r)
			return NULL;
		if (pmap_put(&f->memo, o, (uintptr_t)r) < 0)
			goto nomem;
		while (PyDict_Next(o, &pos, &k, &v)) {
			PyObject *ck, *cv;
			int rc;
			if (fz_push(f, P_KEYOF, 0, k) < 0)
				goto nomem;
			ck = fz_copy(f, k);
			f->depth--;
			if (!ck) {
				Py_DECREF(r);
				return NULL;
			}
			if (fz_push(f, P_KEY, 0, k) < 0) {
				Py_DECREF(ck);
				goto nomem;
			}
			cv = fz_copy(f, v);
			f->depth--;
			if (!cv) {
				Py_DECREF(ck);
				Py_DECREF(r);
				return NULL;
			}
			rc = PyDict_SetItem(d, ck, cv);
			Py_DECREF(ck);
			Py_DECREF(cv);
			if (rc < 0) {
				Py_DECREF(r);
				return NULL;
			}
		}
		return r;
	} else {
		fz_fail(f, t, 0);
		return NULL;
	}
	if (r && pmap_put(&f->memo, o, (uintptr_t)r) < 0) {
		Py_DECREF(r);
		return PyErr_NoMemory();
	}
	return r;
nomem:
	Py_DECREF(r);
	return PyErr_NoMemory();
}

/* "root['a'][3]": built after the window closed, from borrowed keys. */
static PyObject *fz_path(struct fz *f)
{
	PyObject *s = PyUnicode_FromString("root");

	for (size_t i = 0; s && i < f->errdepth; i++) {
		struct pathel *e = &f->errpath[i];
		PyObject *piece = NULL;
		if (e->kind == P_INDEX)
			piece = PyUnicode_FromFormat("[%zd]", e->index);
		else if (e->kind == P_KEY)
			piece = PyUnicode_FromFormat("[%R]", e->key);
		else if (e->kind == P_KEYOF)
			piece = PyUnicode_FromFormat(".keys()<%R>", e->key);
		else
			piece = PyUnicode_FromFormat(".<element %R>", e->key);
		if (!piece) {
			Py_CLEAR(s);
			break;
		}
		PyUnicode_Append(&s, piece);
		Py_DECREF(piece);
	}
	return s;
}

PyDoc_STRVAR(freeze_doc, "freeze(obj) -> copy\n\nDeep-copy immutable data into the sealed tier.");

static PyObject *g_freeze(PyObject *self, PyObject *obj)
{
	struct window win;
	struct walk w = { .allow_mapping = 1 };
	struct fz f = { 0 };
	PyObject *res, *exc = NULL, *exc_type = NULL;
	char *msg = NULL;
	int reject = 0;

	(void)self;
	if (!glue_region) {
		PyErr_SetString(PyExc_RuntimeError, "eternal.freeze(): call eternal.enable() first");
		return NULL;
	}
	if (sealed) {
		PyErr_SetString(PyExc_RuntimeError,
				"eternal.freeze(): the region is sealed; freeze during warm-up, before seal()");
		return NULL;
	}
	if (capture_active) {
		PyErr_SetString(PyExc_RuntimeError, "eternal.freeze(): re-entered from a capture window");
		return NULL;
	}
	C.freezes++;
	window_open(&win);
	res = fz_copy(&f, obj);
	if (res) {
		PyObject *r2 = finish(&w, res, &reject);
		if (reject) {
			Py_DECREF(res);
			res = NULL;
		} else {
			res = r2;
		}
	} else if (PyErr_Occurred()) {
		/* Built in the region: keep its type and text, drop the object. */
		exc = PyErr_GetRaisedException();
		exc_type = Py_NewRef((PyObject *)Py_TYPE(exc));
		PyObject *s = PyObject_Str(exc);
		const char *u = s ? PyUnicode_AsUTF8(s) : NULL;
		if (!u)
			PyErr_Clear();
		msg = strdup(u ? u : "");
		Py_XDECREF(s);
		Py_CLEAR(exc);
	}
	window_close(&win, &w);
	pmap_free(&w.seen);
	free(w.objs);
	pmap_free(&f.memo);
	free(f.path);
	if (!res) {
		if (exc_type) {
			PyErr_SetString(exc_type, msg ? msg : "");
		} else if (reject) {
			PyErr_Format(PyExc_SystemError, "eternal.freeze(): copy holds a %s", w.badtype);
		} else {
			PyObject *path = fz_path(&f);
			if (path && f.toodeep)
				PyErr_Format(PyExc_ValueError, "eternal.freeze(): nesting too deep at %U", path);
			else if (path)
				PyErr_Format(PyExc_TypeError,
					     "eternal.freeze(): cannot freeze object of type '%s' at %U (supported: "
					     "str, bytes, int, float, complex, bool, None, tuple, frozenset, list, dict)",
					     f.badtype ? f.badtype->tp_name : "?", path);
			Py_XDECREF(path);
		}
	}
	Py_XDECREF(exc_type);
	free(msg);
	free(f.errpath);
	return res;
}

/* ------------------------------------------------------------------ */
/* enable(), seal() and friends */

static int parse_mode(const char *s)
{
	static const char *names[] = { "off", "strict", "trap", "audit" };
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

static int parse_engine(const char *s)
{
	static const char *names[] = { "auto", "precise", "thread", "mprotect" };
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

PyDoc_STRVAR(enable_doc, "enable(sealed_reserve=0, cow_reserve=0, grow_step=0)\n\n"
	     "Create the region and install the allocator hook (once per process).");

static PyObject *g_enable(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "sealed_reserve", "cow_reserve", "grow_step", NULL };
	Py_ssize_t sres = 0, cres = 0, step = 0;
	/* NOLOCK: every call is made holding the GIL (lookups are lock-free). */
	struct eternal_region_opts o = { .sz = sizeof(o), .name = "eternal-py", .flags = ETERNAL_REGION_NOLOCK };
	PyObject *marshal;
	int rc;

	(void)self;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|nnn:enable", kwlist, &sres, &cres, &step))
		return NULL;
	if (glue_region) {
		PyErr_SetString(PyExc_RuntimeError, "eternal is already enabled in this process "
				"(by ETERNAL=1 or an earlier eternal.enable())");
		return NULL;
	}
	if (sres < 0 || cres < 0 || step < 0) {
		PyErr_SetString(PyExc_ValueError, "sizes must be >= 0");
		return NULL;
	}
	marshal = PyImport_ImportModule("marshal");
	if (!marshal)
		return NULL;
	Py_XSETREF(marshal_loads, PyObject_GetAttrString(marshal, "loads"));
	Py_DECREF(marshal);
	if (!marshal_loads)
		return NULL;
	o.sealed_reserve = (size_t)sres;
	o.cow_reserve = (size_t)cres;
	o.grow_step = (size_t)step;
	rc = eternal_region_create(&o, &glue_region);
	if (rc < 0) {
		glue_region = NULL;
		errno = -rc;
		return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "eternal_region_create");
	}
	for (int t = 0; t < ETERNAL_NTIERS; t++)
		eternal_tier_bounds(glue_region, (enum eternal_tier)t, &glue_tier_lo[t], &glue_tier_hi[t]);
	glue_lo = glue_tier_lo[0] < glue_tier_lo[1] ? glue_tier_lo[0] : glue_tier_lo[1];
	glue_span = (glue_tier_hi[0] > glue_tier_hi[1] ? glue_tier_hi[0] : glue_tier_hi[1]) - glue_lo;
	install_hook();
	Py_RETURN_NONE;
}

/* Strict mode: a stray write into the sealed tier is SIGSEGV. Say which
 * object and field before the process dies (then fall through to the
 * previous handler, e.g. faulthandler, or the default action). */
static struct sigaction old_segv;
static int segv_installed;

static void segv_handler(int sig, siginfo_t *si, void *ucv)
{
	uintptr_t a = (uintptr_t)si->si_addr;

	if (si->si_code > 0 && glue_region && glue_in_sealed((void *)a)) {
		struct glue_desc d;
		char buf[768];
		const char *sym = "?";
		uintptr_t pc = 0;
		Dl_info di;
		int n;
#if defined(__x86_64__)
		pc = (uintptr_t)((ucontext_t *)ucv)->uc_mcontext.gregs[REG_RIP];
#endif
		glue_describe_addr(a, &d);
		if (pc && dladdr((void *)pc, &di) && di.dli_sname)
			sym = di.dli_sname;
		n = snprintf(buf, sizeof(buf),
			     "eternal: strict mode: write to the sealed tier at 0x%lx: %s object %s%s%s field %s "
			     "(offset %ld) by %s (pc 0x%lx)%s%s\n",
			     (unsigned long)a, d.type, d.repr, d.code[0] ? " " : "", d.code, d.field,
			     d.field_offset, sym, (unsigned long)pc,
			     !strcmp(d.field, "ob_refcnt") ? "; an extension built for an older CPython "
			     "(pre-3.12 headers or limited API) is writing reference counts" : "", "");
		if (n > 0)
			(void)!write(2, buf, (size_t)(n < (int)sizeof(buf) ? n : (int)sizeof(buf) - 1));
	}
	(void)ucv;
	sigaction(sig, &old_segv, NULL);
	if (old_segv.sa_handler == SIG_IGN)
		signal(sig, SIG_DFL);
	/* Returning re-runs the store, which now reaches the previous handler. */
}

static void install_segv(void)
{
	struct sigaction sa;

	if (segv_installed)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = segv_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old_segv) == 0)
		segv_installed = 1;
}

PyDoc_STRVAR(seal_doc, "seal(mode='strict', log=None, engine='auto', trap_cow=True)\n\n"
	     "End warm-up: seal the sealed tier as @mode says.");

static PyObject *g_seal(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "mode", "log", "engine", "trap_cow", NULL };
	const char *mode_s = "strict", *log = NULL, *engine_s = "auto";
	int trap_cow = 1, mode, engine, rc;
	struct eternal_trap_opts o = { .sz = sizeof(o) };

	(void)self;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|szsp:seal", kwlist, &mode_s, &log, &engine_s, &trap_cow))
		return NULL;
	mode = parse_mode(mode_s);
	if (mode < 0) {
		PyErr_Format(PyExc_ValueError, "unknown mode %R (strict, trap, audit or off)",
			     PyTuple_GET_SIZE(args) ? PyTuple_GET_ITEM(args, 0) : Py_None);
		return NULL;
	}
	engine = parse_engine(engine_s);
	if (engine < 0) {
		PyErr_Format(PyExc_ValueError, "unknown engine '%s' (auto, precise, thread or mprotect)", engine_s);
		return NULL;
	}
	if (!glue_region) {
		PyErr_SetString(PyExc_RuntimeError, "eternal.seal(): call eternal.enable() first");
		return NULL;
	}
	if (sealed) {
		PyErr_SetString(PyExc_RuntimeError, "eternal.seal(): already sealed");
		return NULL;
	}
	/* Whatever a free list or a cycle still holds, let go of it now. */
	PyGC_Collect();
	tag_pass();
	sweep();
	intern_short_strings();
	if (glue_interned_fixup() < 0)
		PyErr_Clear();
	o.engine = (enum eternal_trap_engine)engine;
	o.flags = (trap_cow ? ETERNAL_TRAP_COW_TIER : 0) | ETERNAL_TRAP_STRICT_DESCRIBE;
	o.log_dir = log;
	o.describe = glue_describe_cb;
	rc = eternal_seal(glue_region, (enum eternal_mode)mode, &o);
	if (rc < 0) {
		if (rc == -EOPNOTSUPP)
			PyErr_Format(PyExc_OSError, "eternal.seal(mode='%s'): not available here (the library "
				     "lacks this trap engine or the kernel refuses it)", mode_s);
		else
			PyErr_Format(PyExc_OSError, "eternal.seal(mode='%s'): %s", mode_s, strerror(-rc));
		return NULL;
	}
	sealed = 1;
	{
		struct eternal_stats st = { .sz = sizeof(st) };
		if (eternal_stats_get(glue_region, &st) == 0 && st.mode == ETERNAL_MODE_STRICT)
			install_segv();
	}
	Py_RETURN_NONE;
}

PyDoc_STRVAR(exit_remap_doc, "exit_remap() -> bool\n\nAt exit: map the sealed tier private and "
	     "writable, so finalization (3.13 clears interned-string state) writes harmlessly.");

static PyObject *g_exit_remap(PyObject *self, PyObject *unused)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	int fd;

	(void)self;
	(void)unused;
	if (!glue_region || !sealed || eternal_stats_get(glue_region, &st) < 0)
		Py_RETURN_FALSE;
	fd = eternal_tier_fd(glue_region, ETERNAL_TIER_SEALED);
	if (fd < 0 || !st.tier[0].committed)
		Py_RETURN_FALSE;
	if (mmap((void *)glue_tier_lo[0], st.tier[0].committed, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED)
		Py_RETURN_FALSE;
	Py_RETURN_TRUE;
}

/* Tags name the type of the object a block holds (stats by type, trap
 * records). Setting one per object at capture time costs a block lookup
 * each; instead the untagged blocks of the sealed tier are recognised by
 * their type pointer in one pass, before sealing (tags freeze with the
 * tier) and whenever stats() asks. */
struct tagpass {
	void **p;
	uint8_t *tag;
	size_t n, cap;
};

static int tagpass_cb(const struct eternal_block *b, void *arg)
{
	struct tagpass *tp = arg;
	PyTypeObject *t;
	int tag = TAG_NONE;

	if (b->tag != TAG_NONE || b->size < 16)
		return 0;
	t = *(PyTypeObject **)((char *)b->start + 8);
	if (t == &PyUnicode_Type)
		tag = TAG_STR;
	else if (t == &PyBytes_Type)
		tag = TAG_BYTES;
	else if (t == &PyLong_Type)
		tag = TAG_INT;
	else if (t == &PyFloat_Type)
		tag = TAG_FLOAT;
	else if (t == &PyComplex_Type)
		tag = TAG_COMPLEX;
	else if (t == &PyCode_Type)
		tag = TAG_CODE;
	else if (b->size >= GLUE_GC_HEAD + 16) {
		t = *(PyTypeObject **)((char *)b->start + GLUE_GC_HEAD + 8);
		if (t == &PyTuple_Type)
			tag = TAG_TUPLE;
		else if (t == &PyFrozenSet_Type)
			tag = TAG_FROZENSET;
		else if (t == &PyDict_Type)
			tag = TAG_DICT;
		else if (t == &PyDictProxy_Type)
			tag = TAG_PROXY;
		else if (t == &PyList_Type || t == &PySet_Type)
			tag = TAG_STRAY; /* mutable: nothing a capture keeps */
	}
	if (tag == TAG_NONE)
		return 0;
	if (tp->n == tp->cap) {
		size_t nc = tp->cap ? tp->cap * 2 : 65536;
		void **np = realloc(tp->p, nc * sizeof(*np));
		uint8_t *nt = np ? realloc(tp->tag, nc) : NULL;
		if (np)
			tp->p = np;
		if (!nt)
			return 1;
		tp->tag = nt;
		tp->cap = nc;
	}
	tp->p[tp->n] = b->start;
	tp->tag[tp->n++] = (uint8_t)tag;
	return 0;
}

static void tag_pass(void)
{
	struct tagpass tp = { 0 };

	if (!glue_region || sealed)
		return;
	(void)eternal_block_foreach(glue_region, ETERNAL_TIER_SEALED, tagpass_cb, &tp);
	for (size_t i = 0; i < tp.n; i++)
		(void)eternal_block_set_tag(glue_region, tp.p[i], tp.tag[i]);
	free(tp.p);
	free(tp.tag);
}

struct sweep {
	void **p;
	size_t *size;
	uint8_t *tag;
	size_t n, cap;
};

static int sweep_cb(const struct eternal_block *b, void *arg)
{
	struct sweep *s = arg;

	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 65536;
		void **np = realloc(s->p, nc * sizeof(*np));
		size_t *ns = np ? realloc(s->size, nc * sizeof(*ns)) : NULL;
		uint8_t *nt = ns ? realloc(s->tag, nc) : NULL;
		if (np)
			s->p = np;
		if (ns)
			s->size = ns;
		if (!nt)
			return 1;
		s->tag = nt;
		s->cap = nc;
	}
	s->p[s->n] = b->start;
	s->size[s->n] = b->size;
	s->tag[s->n++] = b->tag;
	return 0;
}

/* At seal: whatever is still alive in the sealed tier but no capture result
 * reached (interned names a failed or deduplicated load left, names the
 * type cache holds, pieces stock marshal leaks) is made eternal now, so no
 * refcount or GC write can reach it after sealing. */
static void sweep(void)
{
	struct sweep s = { 0 };
	struct walk w = { 0 };

	(void)eternal_block_foreach(glue_region, ETERNAL_TIER_SEALED, sweep_cb, &s);
	for (size_t i = 0; i < s.n; i++) {
		int tag = s.tag[i];
		PyObject *o = (PyObject *)((char *)s.p[i] + (glue_tag_is_gc(tag) ? GLUE_GC_HEAD : 0));

		if (tag == TAG_STRAY) {
			neutralize(s.p[i], s.size[i]);
			C.strays++;
			continue;
		}
		if (tag == TAG_NONE || tag == TAG_UTF8 || tag == TAG_DICTKEYS || tag >= TAG_MAX)
			continue;
		if (tag == TAG_STR && _Py_IsImmortal(o) && (PyUnicode_IS_ASCII(o) ||
							    ((PyCompactUnicodeObject *)o)->utf8))
			continue;
		if (tag != TAG_STR && _Py_IsImmortal(o))
			continue;
		process_leaf(&w, o);
		C.orphans++;
	}
	pmap_free(&w.seen);
	free(s.p);
	free(s.size);
	free(s.tag);
}

static int dict_set_ull(PyObject *d, const char *k, unsigned long long v)
{
	PyObject *o = PyLong_FromUnsignedLongLong(v);
	int rc = o ? PyDict_SetItemString(d, k, o) : -1;
	Py_XDECREF(o);
	return rc;
}

static int dict_set_str(PyObject *d, const char *k, const char *v)
{
	PyObject *o = PyUnicode_FromString(v);
	int rc = o ? PyDict_SetItemString(d, k, o) : -1;
	Py_XDECREF(o);
	return rc;
}

static int count_stray_cb(const struct eternal_block *b, void *arg)
{
	if (b->tag == TAG_STRAY)
		++*(unsigned long long *)arg;
	return 0;
}

static unsigned long long live_strays(void)
{
	unsigned long long n = 0;
	if (glue_region)
		(void)eternal_block_foreach(glue_region, ETERNAL_TIER_SEALED, count_stray_cb, &n);
	return n;
}

PyDoc_STRVAR(stats_doc, "stats() -> dict");

static PyObject *g_stats(PyObject *self, PyObject *unused)
{
	struct eternal_stats *st;
	PyObject *d = PyDict_New(), *objs = NULL, *bytes = NULL, *tiers = NULL;
	static const char *tier_names[] = { "sealed", "cow" };

	(void)self;
	(void)unused;
	if (!d)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		goto nomem;
	st->sz = sizeof(*st);
	if (PyDict_SetItemString(d, "enabled", glue_region ? Py_True : Py_False) < 0 ||
	    PyDict_SetItemString(d, "sealed", sealed ? Py_True : Py_False) < 0)
		goto err;
	tag_pass();
	if (glue_region && eternal_stats_get(glue_region, st) < 0)
		memset(st, 0, sizeof(*st));
	dict_set_str(d, "mode", !glue_region ? "none" : !sealed ? "warmup" : eternal_mode_name(st->mode));
	dict_set_str(d, "engine", sealed && st->mode == ETERNAL_MODE_TRAP ? eternal_engine_name(st->engine) : "");
	dict_set_ull(d, "sealed_bytes", st->tier[0].used);
	dict_set_ull(d, "cow_bytes", st->tier[1].used);
	dict_set_ull(d, "sealed_committed", st->tier[0].committed);
	dict_set_ull(d, "cow_committed", st->tier[1].committed);
	dict_set_ull(d, "sealed_blocks", st->tier[0].blocks);
	dict_set_ull(d, "cow_blocks", st->tier[1].blocks);
	dict_set_ull(d, "alloc_failures", st->tier[0].alloc_failures + st->tier[1].alloc_failures);
	dict_set_ull(d, "trap_writes_sealed", st->trap_writes[0]);
	dict_set_ull(d, "trap_writes_cow", st->trap_writes[1]);
	dict_set_ull(d, "trap_dropped", st->trap_dropped);
	dict_set_ull(d, "fallback", C.fallback_blocks);
	dict_set_ull(d, "fallback_bytes", C.fallback_bytes);
	dict_set_ull(d, "captures", C.captures);
	dict_set_ull(d, "capture_errors", C.capture_errors);
	dict_set_ull(d, "passthrough", C.passthrough);
	dict_set_ull(d, "rejected", C.rejected);
	dict_set_ull(d, "code_moved", C.code_moved);
	dict_set_ull(d, "code_moved_heap", C.code_moved_heap);
	dict_set_ull(d, "interned_swaps", C.interned_swaps);
	dict_set_ull(d, "orphans", C.orphans);
	dict_set_ull(d, "swept_at_seal", C.orphans);
	dict_set_ull(d, "stray_blocks", C.strays);
	dict_set_ull(d, "stray_blocks_live", live_strays());
	dict_set_ull(d, "sealed_frees_ignored", C.sealed_frees_ignored);
	dict_set_ull(d, "freezes", C.freezes);
	dict_set_ull(d, "interned_extra", C.interned_extra);
	dict_set_ull(d, "cow_tuples", C.cow_tuples);

	if (PyErr_Occurred())
		goto err;
	objs = PyDict_New();
	bytes = PyDict_New();
	tiers = PyDict_New();
	if (!objs || !bytes || !tiers)
		goto err;
	for (int t = 0; t < ETERNAL_NTIERS; t++) {
		PyObject *td = PyDict_New();
		if (!td || PyDict_SetItemString(tiers, tier_names[t], td) < 0) {
			Py_XDECREF(td);
			goto err;
		}
		Py_DECREF(td);
		for (int g = 0; g < 256; g++) {
			uint64_t nb = st->tag_blocks[t][g], by = st->tag_bytes[t][g];
			const char *name = g < TAG_MAX ? glue_tag_names[g] : "other";
			PyObject *e;
			if (!nb)
				continue;
			e = Py_BuildValue("{sKsK}", "objects", (unsigned long long)nb, "bytes", (unsigned long long)by);
			if (!e || PyDict_SetItemString(td, name, e) < 0) {
				Py_XDECREF(e);
				goto err;
			}
			Py_DECREF(e);
			for (int which = 0; which < 2; which++) {
				PyObject *acc = which ? bytes : objs, *cur = PyDict_GetItemString(acc, name);
				unsigned long long v = (which ? by : nb) + (cur ? PyLong_AsUnsignedLongLong(cur) : 0);
				if (dict_set_ull(acc, name, v) < 0)
					goto err;
			}
		}
	}
	if (PyDict_SetItemString(d, "objects_by_type", objs) < 0 ||
	    PyDict_SetItemString(d, "bytes_by_type", bytes) < 0 ||
	    PyDict_SetItemString(d, "by_tier", tiers) < 0)
		goto err;
	Py_DECREF(objs);
	Py_DECREF(bytes);
	Py_DECREF(tiers);
	free(st);
	return d;
nomem:
	PyErr_NoMemory();
err:
	free(st);
	Py_XDECREF(objs);
	Py_XDECREF(bytes);
	Py_XDECREF(tiers);
	Py_DECREF(d);
	return NULL;
}

static PyObject *desc_dict(uintptr_t addr)
{
	struct glue_desc d;
	glue_describe_addr(addr, &d);
	return Py_BuildValue("{sssssssssksl}", "type", d.type, "field", d.field, "repr", d.repr,
			     "code", d.code, "object", (unsigned long)d.object, "field_offset", d.field_offset);
}

PyDoc_STRVAR(describe_doc, "describe(addr) -> dict\n\nName the object and field at a region address.");

static PyObject *g_describe(PyObject *self, PyObject *arg)
{
	unsigned long long a = PyLong_AsUnsignedLongLong(arg);

	(void)self;
	if (a == (unsigned long long)-1 && PyErr_Occurred())
		return NULL;
	return desc_dict((uintptr_t)a);
}

static PyObject *symbol_of(uint64_t pc)
{
	char buf[512];
	int n;

	if (!pc)
		Py_RETURN_NONE;
	n = eternal_symbolize(pc, buf, sizeof(buf));
	if (n < 0) {
		Dl_info di;
		if (dladdr((void *)(uintptr_t)pc, &di) && di.dli_sname)
			return PyUnicode_FromFormat("%s+0x%lx (%s)", di.dli_sname,
						    (unsigned long)(pc - (uintptr_t)di.dli_saddr),
						    di.dli_fname ? di.dli_fname : "?");
		return PyUnicode_FromFormat("0x%lx", (unsigned long)pc);
	}
	return PyUnicode_FromString(buf);
}

PyDoc_STRVAR(symbolize_doc, "symbolize(pc) -> str or None");

static PyObject *g_symbolize(PyObject *self, PyObject *arg)
{
	unsigned long long a = PyLong_AsUnsignedLongLong(arg);

	(void)self;
	if (a == (unsigned long long)-1 && PyErr_Occurred())
		return NULL;
	return symbol_of(a);
}

PyDoc_STRVAR(trap_read_doc, "trap_read(max=4096) -> list of dict\n\nDrain trapped writes, in Python terms.");

static PyObject *g_trap_read(PyObject *self, PyObject *args)
{
	Py_ssize_t max = 4096;
	struct eternal_trap_event ev[64];
	PyObject *out;

	(void)self;
	if (!PyArg_ParseTuple(args, "|n:trap_read", &max))
		return NULL;
	out = PyList_New(0);
	if (!out || !glue_region)
		return out;
	while (PyList_GET_SIZE(out) < max) {
		size_t cap = (size_t)(max - PyList_GET_SIZE(out));
		int n = eternal_trap_read(glue_region, ev, cap < 64 ? cap : 64);
		if (n == -EOPNOTSUPP || n == 0)
			break;
		if (n < 0) {
			Py_DECREF(out);
			errno = -n;
			return PyErr_SetFromErrno(PyExc_OSError);
		}
		for (int i = 0; i < n; i++) {
			struct eternal_trap_event *e = &ev[i];
			PyObject *rec = desc_dict((uintptr_t)e->addr), *frames, *v;
			if (!rec)
				goto fail;
			frames = PyList_New(0);
			for (uint32_t f = 0; frames && f < e->nframes && f < ETERNAL_TRAP_MAX_FRAMES; f++) {
				PyObject *s = symbol_of(e->frames[f]);
				if (!s || PyList_Append(frames, s) < 0)
					Py_CLEAR(frames);
				Py_XDECREF(s);
			}
			v = symbol_of(e->pc);
			if (!frames || !v ||
			    PyDict_SetItemString(rec, "frames", frames) < 0 ||
			    PyDict_SetItemString(rec, "writer", v) < 0) {
				Py_XDECREF(frames);
				Py_XDECREF(v);
				Py_DECREF(rec);
				goto fail;
			}
			Py_DECREF(frames);
			Py_DECREF(v);
			dict_set_ull(rec, "seq", e->seq);
			dict_set_ull(rec, "time_ns", e->time_ns);
			dict_set_ull(rec, "pid", (unsigned long long)e->pid);
			dict_set_ull(rec, "tid", (unsigned long long)e->tid);
			dict_set_ull(rec, "address", e->addr);
			dict_set_ull(rec, "pc", e->pc);
			dict_set_ull(rec, "kernel", e->kernel);
			dict_set_str(rec, "tier", e->tier == ETERNAL_TIER_SEALED ? "sealed"
					 : e->tier == ETERNAL_TIER_COW ? "cow" : "none");
			dict_set_str(rec, "engine", eternal_engine_name((enum eternal_trap_engine)e->engine));
			if (PyErr_Occurred() || PyList_Append(out, rec) < 0) {
				Py_DECREF(rec);
				goto fail;
			}
			Py_DECREF(rec);
		}
	}
	return out;
fail:
	Py_DECREF(out);
	return NULL;
}

PyDoc_STRVAR(audit_scan_doc, "audit_scan(reprotect=False) -> list of dict\n\nAudit mode: pages written since the last scan.");

static PyObject *g_audit_scan(PyObject *self, PyObject *args)
{
	int reprotect = 0, n;
	struct eternal_dirty_page *pg;
	PyObject *out;

	(void)self;
	if (!PyArg_ParseTuple(args, "|p:audit_scan", &reprotect))
		return NULL;
	if (!glue_region) {
		PyErr_SetString(PyExc_RuntimeError, "not enabled");
		return NULL;
	}
	pg = calloc(65536, sizeof(*pg));
	if (!pg)
		return PyErr_NoMemory();
	n = eternal_audit_scan(glue_region, reprotect ? ETERNAL_AUDIT_REPROTECT : 0, pg, 65536);
	if (n < 0) {
		free(pg);
		errno = -n;
		return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "eternal_audit_scan");
	}
	out = PyList_New(0);
	for (int i = 0; out && i < n; i++) {
		PyObject *e = Py_BuildValue("{sKsssI}", "address", (unsigned long long)pg[i].addr, "tier",
					    pg[i].tier == 0 ? "sealed" : "cow", "blocks", pg[i].blocks);
		if (!e || PyList_Append(out, e) < 0)
			Py_CLEAR(out);
		Py_XDECREF(e);
	}
	free(pg);
	return out;
}

struct stray_walk {
	PyObject *out;
	Py_ssize_t max;
};

static int stray_cb(const struct eternal_block *b, void *arg)
{
	struct stray_walk *s = arg;
	PyObject *d;

	if (b->tag != TAG_STRAY)
		return 0;
	if (PyList_GET_SIZE(s->out) >= s->max)
		return 1;
	d = desc_dict((uintptr_t)b->start);
	if (!d || PyList_Append(s->out, d) < 0) {
		Py_XDECREF(d);
		return -1;
	}
	Py_DECREF(d);
	return 0;
}

PyDoc_STRVAR(strays_doc, "strays(max=100) -> list of dict\n\nLive region blocks a window left behind "
	     "that no result accounts for (should be empty).");

static PyObject *g_strays(PyObject *self, PyObject *args)
{
	struct stray_walk s = { NULL, 100 };

	(void)self;
	if (!PyArg_ParseTuple(args, "|n:strays", &s.max))
		return NULL;
	s.out = PyList_New(0);
	if (!s.out || !glue_region)
		return s.out;
	if (eternal_block_foreach(glue_region, ETERNAL_TIER_SEALED, stray_cb, &s) < 0 && PyErr_Occurred()) {
		Py_DECREF(s.out);
		return NULL;
	}
	return s.out;
}

PyDoc_STRVAR(tier_of_doc, "tier_of(obj) -> 'sealed' | 'cow' | None");

static PyObject *g_tier_of(PyObject *self, PyObject *o)
{
	(void)self;
	if (!glue_region)
		Py_RETURN_NONE;
	switch (eternal_tier_of(glue_region, o)) {
	case ETERNAL_TIER_SEALED:
		return PyUnicode_FromString("sealed");
	case ETERNAL_TIER_COW:
		return PyUnicode_FromString("cow");
	default:
		Py_RETURN_NONE;
	}
}

PyDoc_STRVAR(bounds_doc, "bounds() -> ((sealed_lo, sealed_hi), (cow_lo, cow_hi)) or None");

static PyObject *g_bounds(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	if (!glue_region)
		Py_RETURN_NONE;
	return Py_BuildValue("((kk)(kk))", (unsigned long)glue_tier_lo[0], (unsigned long)glue_tier_hi[0],
			     (unsigned long)glue_tier_lo[1], (unsigned long)glue_tier_hi[1]);
}

/* Test helper: what Py_INCREF compiled with CPython 3.11 headers does. Kept
 * out of line so the trap log names this symbol as the writer. */
__attribute__((noinline, visibility("default"))) void eternal_glue_old_abi_incref(PyObject *o)
{
	*(volatile Py_ssize_t *)&o->ob_refcnt += 1;
}

static PyObject *g_old_abi_incref(PyObject *self, PyObject *o)
{
	(void)self;
	eternal_glue_old_abi_incref(o);
	Py_RETURN_NONE;
}

static PyObject *g_is_enabled(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	return PyBool_FromLong(glue_region != NULL);
}

static PyObject *g_is_sealed(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	return PyBool_FromLong(sealed);
}

static PyMethodDef methods[] = {
	{ "enable", (PyCFunction)(void (*)(void))g_enable, METH_VARARGS | METH_KEYWORDS, enable_doc },
	{ "seal", (PyCFunction)(void (*)(void))g_seal, METH_VARARGS | METH_KEYWORDS, seal_doc },
	{ "loads", (PyCFunction)(void (*)(void))g_loads, METH_FASTCALL | METH_KEYWORDS, loads_doc },
	{ "recapture", g_recapture, METH_O, recapture_doc },
	{ "compile", g_compile, METH_VARARGS, compile_doc },
	{ "capture_possible", g_capture_possible, METH_NOARGS, NULL },
	{ "freeze", g_freeze, METH_O, freeze_doc },
	{ "stats", g_stats, METH_NOARGS, stats_doc },
	{ "describe", g_describe, METH_O, describe_doc },
	{ "symbolize", g_symbolize, METH_O, symbolize_doc },
	{ "trap_read", g_trap_read, METH_VARARGS, trap_read_doc },
	{ "audit_scan", g_audit_scan, METH_VARARGS, audit_scan_doc },
	{ "tier_of", g_tier_of, METH_O, tier_of_doc },
	{ "strays", g_strays, METH_VARARGS, strays_doc },
	{ "bounds", g_bounds, METH_NOARGS, bounds_doc },
	{ "exit_remap", g_exit_remap, METH_NOARGS, exit_remap_doc },
	{ "is_enabled", g_is_enabled, METH_NOARGS, NULL },
	{ "is_sealed", g_is_sealed, METH_NOARGS, NULL },
	{ "_old_abi_incref", g_old_abi_incref, METH_O, "emulate a pre-3.12 Py_INCREF (tests)" },
	{ NULL, NULL, 0, NULL },
};

static int exec_module(PyObject *m)
{
	/* The ABI tag already pins major.minor; refuse a mismatch anyway. */
	if ((Py_Version >> 16) != (PY_VERSION_HEX >> 16)) {
		PyErr_Format(PyExc_ImportError, "_eternal was built for CPython %d.%d",
			     PY_MAJOR_VERSION, PY_MINOR_VERSION);
		return -1;
	}
	if (PyModule_AddStringConstant(m, "library_version", eternal_version()) < 0 ||
	    PyModule_AddStringConstant(m, "built_for", PY_VERSION) < 0)
		return -1;
	return 0;
}

static PyModuleDef_Slot slots[] = {
	{ Py_mod_exec, exec_module },
	{ Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED },
	{ 0, NULL },
};

static struct PyModuleDef moddef = {
	PyModuleDef_HEAD_INIT, "_eternal",
	"Allocator hook, capture window and region for the eternal package.",
	0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__eternal(void)
{
	return PyModuleDef_Init(&moddef);
}
