/* glue.h - shared declarations of the `_eternal` extension: the region, the
 * capture window, and the small version-specific layer in compat.c. */
#ifndef ETERNAL_GLUE_H
#define ETERNAL_GLUE_H

#include <Python.h>
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

#include "eternal.h"

#if PY_VERSION_HEX >= 0x030D0000
/* Exported by libpython but declared only in an internal header in 3.13. */
PyAPI_FUNC(int) _PySet_NextEntry(PyObject *set, Py_ssize_t *pos, PyObject **key, Py_hash_t *hash);
#endif

/* Block tags: the Python type of the object that starts the block. The
 * library counts blocks and bytes per tag, which gives stats by type. */
enum glue_tag {
	TAG_NONE = 0,
	TAG_STR = 1,
	TAG_BYTES = 2,
	TAG_INT = 3,
	TAG_FLOAT = 4,
	TAG_COMPLEX = 5,
	TAG_TUPLE = 6,      /* GC object: PyGC_Head first */
	TAG_FROZENSET = 7,  /* GC */
	TAG_CODE = 8,
	TAG_DICT = 9,       /* GC; eternal.freeze() only */
	TAG_PROXY = 10,     /* GC; the mappingproxy around a frozen dict */
	TAG_UTF8 = 11,      /* 3.12: UTF-8 buffer of a non-ASCII str */
	TAG_DICTKEYS = 12,  /* 3.12: key table of a frozen dict */
	TAG_STRAY = 13,     /* live block left by a capture that we cannot name */
	TAG_MAX = 14,
};

extern const char *const glue_tag_names[TAG_MAX];

/* Size of the GC header in front of tuples, frozensets and dicts. */
#define GLUE_GC_HEAD 16

static inline bool glue_tag_is_gc(int tag)
{
	return tag == TAG_TUPLE || tag == TAG_FROZENSET || tag == TAG_DICT || tag == TAG_PROXY;
}

/* The one region of this process (NULL until enable()). */
extern eternal_region *glue_region;
extern uintptr_t glue_lo, glue_span;              /* whole region: [lo, lo + span) */
extern uintptr_t glue_tier_lo[ETERNAL_NTIERS], glue_tier_hi[ETERNAL_NTIERS];

static inline bool glue_in_region(const void *p)
{
	return (uintptr_t)p - glue_lo < glue_span;
}

static inline bool glue_in_sealed(const void *p)
{
	return (uintptr_t)p >= glue_tier_lo[ETERNAL_TIER_SEALED] &&
	       (uintptr_t)p < glue_tier_hi[ETERNAL_TIER_SEALED];
}

/* compat.c: the free lists whose entries would otherwise carry region
 * blocks into mortal use after the window closes (or hand heap blocks to
 * objects created inside it). suspend() empties them as seen by CPython and
 * makes pushes fail; resume() frees what was pushed meanwhile and restores. */
struct glue_freelists;
struct glue_freelists *glue_freelists_suspend(void);
void glue_freelists_resume(struct glue_freelists *s);

/* compat.c: 3.12 keeps the interned dict's key table in PyObject_Malloc
 * memory; if a resize during the window put it in the region, swap the dict
 * for a copy made outside. Returns 1 if swapped, 0 if not needed, -1 error. */
int glue_interned_fixup(void);

/* compat.c: 3.13 interns identifier-like constants as mortal; upgrading
 * them to immortal now avoids a state write after sealing. */
void glue_intern_immortal(PyObject *s);

/* compat.c: intern a short region str now (immortal), so that interning it
 * after sealing (compile's co_filename, setattr, sys.intern) finds it done. */
void glue_intern_now(PyObject *s);

/* compat.c: are Python-level or C-level audit hooks installed? (They would
 * run inside the capture window.) */
bool glue_audit_hooks_present(void);

/* describe.c: name what lives at @addr (object type, field, short repr,
 * code qualname and position) without the GIL and without allocating. */
struct glue_desc {
	char type[48];
	char field[48];
	char repr[96];
	char code[240];      /* "qualname (file:line)" for code objects, else "" */
	long field_offset;   /* offset inside the object (negative: GC header) */
	uintptr_t object;    /* address of the object, 0 if unknown */
};
int glue_describe_addr(uintptr_t addr, struct glue_desc *d);
int glue_describe_cb(const struct eternal_trap_event *ev, char *buf, size_t len, void *arg);
int glue_desc_json(const struct glue_desc *d, char *buf, size_t len);

#endif
