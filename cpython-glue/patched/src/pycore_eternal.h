/* pycore_eternal.h - the hooks through which a patched CPython 3.13 puts warm-up
 * objects into libeternal's region; defined in Modules/_eternal_patched.c. */
#ifndef Py_INTERNAL_ETERNAL_H
#define Py_INTERNAL_ETERNAL_H
#ifndef Py_BUILD_CORE
#  error "this header requires Py_BUILD_CORE define"
#endif

#include <stdint.h>

/* The whole region, both tiers: [lo, hi). Both stay 0 until enable(), so the
   range check in hot paths (PyObject_Free, free lists) is one subtraction and
   one comparison, and always false on an interpreter that never enables. */
extern uintptr_t _Py_eternal_lo, _Py_eternal_hi;
/* Non-zero between enable() and seal() in the process that enabled: interning
   and marshal route their results into the region only then. */
extern int _Py_eternal_warm;
/* Set by marshal around _PyCode_New so that the code object is allocated in
   the cow tier (code is written at run time, so never in the sealed tier). */
extern int _Py_eternal_code;

static inline int
_Py_IsEternal(const void *p)
{
    return (uintptr_t)p - _Py_eternal_lo < _Py_eternal_hi - _Py_eternal_lo;
}

/* intern_common(), before the dict insert: may replace *p by a region copy
   (warm-up) or, for a region string after warm-up, by a heap copy, so that a
   sealed string is never marked interned. Steals and returns through *p;
   never fails (on error *p is left as it was). */
extern void _PyEternal_InternSwap(PyInterpreterState *interp, PyObject *interned,
                                  PyObject **p);
/* marshal: an immortal, untracked copy of a leaf or tuple in the sealed tier,
   or NULL (no exception) when the object is not eligible. */
extern PyObject *_PyEternal_Copy(PyObject *op);
/* _PyCode_New: an uninitialised, immortal code object in the cow tier, or
   NULL (no exception) to fall back to the heap. */
extern PyObject *_PyEternal_NewCode(Py_ssize_t size);
/* Start-up of the main interpreter: ETERNAL=1 enables before the import
   system loads its first module; after site, ETERNAL_PRELOAD and
   ETERNAL_SEAL finish the warm-up. */
extern void _PyEternal_InitMain(void);
extern void _PyEternal_AfterSite(void);

#endif /* !Py_INTERNAL_ETERNAL_H */
