/* describe.c - names the Python object and field behind a region address
 * without the GIL and without allocating: used by the trap log and crashes. */
#include "glue.h"

#include <stdio.h>
#include <string.h>

const char *const glue_tag_names[TAG_MAX] = {
	[TAG_NONE] = "untagged", [TAG_STR] = "str", [TAG_BYTES] = "bytes",
	[TAG_INT] = "int", [TAG_FLOAT] = "float", [TAG_COMPLEX] = "complex",
	[TAG_TUPLE] = "tuple", [TAG_FROZENSET] = "frozenset", [TAG_CODE] = "code",
	[TAG_DICT] = "dict", [TAG_PROXY] = "mappingproxy", [TAG_UTF8] = "str.utf8",
	[TAG_DICTKEYS] = "dict.keys", [TAG_STRAY] = "stray",
};

struct field {
	long off;
	const char *name;
};

#define F(type, member) { (long)offsetof(type, member), #member }

static const struct field head_fields[] = {
	{ 0, "ob_refcnt" }, { 8, "ob_type" },
};

static const struct field str_fields[] = {
	{ 0, "ob_refcnt" }, { 8, "ob_type" },
	F(PyASCIIObject, length), F(PyASCIIObject, hash), F(PyASCIIObject, state),
};

static const struct field ustr_fields[] = {
	{ 0, "ob_refcnt" }, { 8, "ob_type" },
	F(PyASCIIObject, length), F(PyASCIIObject, hash), F(PyASCIIObject, state),
	F(PyCompactUnicodeObject, utf8_length), F(PyCompactUnicodeObject, utf8),
};

static const struct field bytes_fields[] = {
	{ 0, "ob_refcnt" }, { 8, "ob_type" }, F(PyVarObject, ob_size),
	F(PyBytesObject, ob_shash), F(PyBytesObject, ob_sval),
};

static const struct field int_fields[] = {
	{ 0, "ob_refcnt" }, { 8, "ob_type" }, { 16, "lv_tag" }, { 24, "ob_digit" },
};

static const struct field float_fields[] = {
	{ 0, "ob_refcnt" }, { 8, "ob_type" }, F(PyFloatObject, ob_fval),
};

static const struct field complex_fields[] = {
	{ 0, "ob_refcnt" }, { 8, "ob_type" }, { 16, "cval.real" }, { 24, "cval.imag" },
};

static const struct field tuple_fields[] = {
	{ -16, "gc_next" }, { -8, "gc_prev" },
	{ 0, "ob_refcnt" }, { 8, "ob_type" }, F(PyVarObject, ob_size), F(PyTupleObject, ob_item),
};

static const struct field set_fields[] = {
	{ -16, "gc_next" }, { -8, "gc_prev" },
	{ 0, "ob_refcnt" }, { 8, "ob_type" },
	F(PySetObject, fill), F(PySetObject, used), F(PySetObject, mask), F(PySetObject, table),
	F(PySetObject, hash), F(PySetObject, finger), F(PySetObject, smalltable),
	F(PySetObject, weakreflist),
};

static const struct field dict_fields[] = {
	{ -16, "gc_next" }, { -8, "gc_prev" },
	{ 0, "ob_refcnt" }, { 8, "ob_type" }, F(PyDictObject, ma_used),
	F(PyDictObject, ma_version_tag),
	F(PyDictObject, ma_keys), F(PyDictObject, ma_values),
};

static const struct field proxy_fields[] = {
	{ -16, "gc_next" }, { -8, "gc_prev" }, { 0, "ob_refcnt" }, { 8, "ob_type" }, { 16, "mapping" },
};

static const struct field code_fields[] = {
	{ 0, "ob_refcnt" }, { 8, "ob_type" }, F(PyVarObject, ob_size),
	F(PyCodeObject, co_consts), F(PyCodeObject, co_names), F(PyCodeObject, co_exceptiontable),
	F(PyCodeObject, co_flags), F(PyCodeObject, co_argcount), F(PyCodeObject, co_posonlyargcount),
	F(PyCodeObject, co_kwonlyargcount), F(PyCodeObject, co_stacksize), F(PyCodeObject, co_firstlineno),
	F(PyCodeObject, co_nlocalsplus), F(PyCodeObject, co_framesize), F(PyCodeObject, co_nlocals),
	F(PyCodeObject, co_ncellvars), F(PyCodeObject, co_nfreevars), F(PyCodeObject, co_version),
	F(PyCodeObject, co_localsplusnames), F(PyCodeObject, co_localspluskinds),
	F(PyCodeObject, co_filename), F(PyCodeObject, co_name), F(PyCodeObject, co_qualname),
	F(PyCodeObject, co_linetable), F(PyCodeObject, co_weakreflist),
#if PY_VERSION_HEX >= 0x030D0000
	F(PyCodeObject, co_executors),
#endif
	F(PyCodeObject, _co_cached), F(PyCodeObject, _co_instrumentation_version),
	F(PyCodeObject, _co_monitoring), F(PyCodeObject, _co_firsttraceable), F(PyCodeObject, co_extra),
	F(PyCodeObject, co_code_adaptive),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *field_name(const struct field *f, size_t n, long off)
{
	const char *best = NULL;

	for (size_t i = 0; i < n; i++)
		if (f[i].off <= off)
			best = f[i].name; /* tables are in layout order */
	return best ? best : "?";
}

/* Append a character of a str as it would appear in a repr. */
static size_t put_char(char *out, size_t pos, size_t cap, Py_UCS4 c)
{
	char tmp[12];
	int n;

	if (c == '\'' || c == '\\')
		n = snprintf(tmp, sizeof(tmp), "\\%c", (char)c);
	else if (c >= 0x20 && c < 0x7f)
		n = snprintf(tmp, sizeof(tmp), "%c", (char)c);
	else if (c < 0x100)
		n = snprintf(tmp, sizeof(tmp), "\\x%02x", (unsigned)c);
	else if (c < 0x10000)
		n = snprintf(tmp, sizeof(tmp), "\\u%04x", (unsigned)c);
	else
		n = snprintf(tmp, sizeof(tmp), "\\U%08x", (unsigned)c);
	if (pos + (size_t)n + 1 >= cap)
		return pos;
	memcpy(out + pos, tmp, (size_t)n);
	out[pos + (size_t)n] = 0;
	return pos + (size_t)n;
}

/* Plain text of a compact str (no quotes), shortened to fit. */
static void str_text(PyObject *s, char *out, size_t cap, int quote)
{
	PyASCIIObject *a = (PyASCIIObject *)s;
	Py_ssize_t len = a->length, max = quote ? 40 : 160;
	const void *data;
	unsigned kind = a->state.kind;
	size_t pos = 0;

	out[0] = 0;
	if (!a->state.compact || kind == 0) {
		snprintf(out, cap, "<str of %zd>", len);
		return;
	}
	data = a->state.ascii ? (const void *)(a + 1) : (const void *)((PyCompactUnicodeObject *)s + 1);
	if (quote && cap > 2) {
		out[0] = '\'';
		out[1] = 0;
		pos = 1;
	}
	for (Py_ssize_t i = 0; i < len && i < max; i++) {
		Py_UCS4 c = kind == 1 ? ((const Py_UCS1 *)data)[i]
			  : kind == 2 ? ((const Py_UCS2 *)data)[i] : ((const Py_UCS4 *)data)[i];
		if (!quote && c >= 0x20 && c < 0x7f && c != '\\') {
			if (pos + 2 < cap) {
				out[pos++] = (char)c;
				out[pos] = 0;
			}
			continue;
		}
		pos = put_char(out, pos, cap, c);
	}
	if (quote && len > max && pos + 4 < cap) {
		memcpy(out + pos, "...", 4);
		pos += 3;
	}
	if (quote && pos + 2 < cap) {
		out[pos++] = '\'';
		out[pos] = 0;
	}
}

static void short_repr(PyObject *o, int tag, char *out, size_t cap)
{
	out[0] = 0;
	switch (tag) {
	case TAG_STR:
		str_text(o, out, cap, 1);
		break;
	case TAG_BYTES: {
		Py_ssize_t n = Py_SIZE(o), i;
		size_t pos = 2;
		const unsigned char *d = (const unsigned char *)((PyBytesObject *)o)->ob_sval;
		out[0] = 'b';
		out[1] = '\'';
		out[2] = 0;
		for (i = 0; i < n && i < 32; i++)
			pos = put_char(out, pos, cap, d[i]);
		snprintf(out + pos, cap - pos, "%s'", n > 32 ? "..." : "");
		break;
	}
	case TAG_INT:
#if PY_VERSION_HEX >= 0x030C0000
		if (_PyLong_IsCompact((PyLongObject *)o))
			snprintf(out, cap, "%zd", _PyLong_CompactValue((PyLongObject *)o));
		else
			snprintf(out, cap, "<int of %zu digits>",
				 (size_t)(((PyLongObject *)o)->long_value.lv_tag >> 3));
#endif
		break;
	case TAG_FLOAT:
		snprintf(out, cap, "%.17g", ((PyFloatObject *)o)->ob_fval);
		break;
	case TAG_COMPLEX:
		snprintf(out, cap, "(%g%+gj)", ((PyComplexObject *)o)->cval.real,
			 ((PyComplexObject *)o)->cval.imag);
		break;
	case TAG_TUPLE:
		snprintf(out, cap, "<tuple of %zd>", Py_SIZE(o));
		break;
	case TAG_FROZENSET:
		snprintf(out, cap, "<frozenset of %zd>", ((PySetObject *)o)->used);
		break;
	case TAG_DICT:
		snprintf(out, cap, "<dict of %zd>", ((PyDictObject *)o)->ma_used);
		break;
	case TAG_PROXY:
		snprintf(out, cap, "<mappingproxy>");
		break;
	case TAG_CODE: {
		char q[96];
		str_text(((PyCodeObject *)o)->co_qualname, q, sizeof(q), 0);
		snprintf(out, cap, "<code %s>", q);
		break;
	}
	default:
		break;
	}
}

static int tag_of_type(PyTypeObject *t)
{
	if (t == &PyUnicode_Type) return TAG_STR;
	if (t == &PyBytes_Type) return TAG_BYTES;
	if (t == &PyLong_Type) return TAG_INT;
	if (t == &PyFloat_Type) return TAG_FLOAT;
	if (t == &PyComplex_Type) return TAG_COMPLEX;
	if (t == &PyTuple_Type) return TAG_TUPLE;
	if (t == &PyFrozenSet_Type) return TAG_FROZENSET;
	if (t == &PyCode_Type) return TAG_CODE;
	if (t == &PyDict_Type) return TAG_DICT;
	if (t == &PyDictProxy_Type) return TAG_PROXY;
	return TAG_NONE;
}

int glue_describe_addr(uintptr_t addr, struct glue_desc *d)
{
	struct eternal_block b;
	PyObject *o;
	int tag, rc;
	long off;

	memset(d, 0, sizeof(*d));
	if (!glue_region)
		return -ENOENT;
	rc = eternal_block_find(glue_region, (const void *)addr, &b);
	if (rc < 0) {
		snprintf(d->type, sizeof(d->type), "%s", rc == -ENOENT ? "(no live block)" : "(outside region)");
		return rc;
	}
	tag = b.tag;
	if (tag == TAG_NONE || tag == TAG_STRAY) {
		/* Untagged: recognise the object by its type pointer. */
		int t = b.size >= 16 ? tag_of_type(*(PyTypeObject **)((char *)b.start + 8)) : 0;
		if (t && !glue_tag_is_gc(t))
			tag = t;
		else if (b.size >= 32 && glue_tag_is_gc(t = tag_of_type(*(PyTypeObject **)((char *)b.start + 24))))
			tag = t;
	}
	if (tag == TAG_UTF8 || tag == TAG_DICTKEYS || tag == TAG_NONE || tag == TAG_STRAY || tag >= TAG_MAX) {
		snprintf(d->type, sizeof(d->type), "%s", tag < TAG_MAX ? glue_tag_names[tag] : "?");
		snprintf(d->field, sizeof(d->field), "+%zu", (size_t)(addr - (uintptr_t)b.start));
		d->field_offset = (long)(addr - (uintptr_t)b.start);
		return 0;
	}
	o = (PyObject *)((char *)b.start + (glue_tag_is_gc(tag) ? GLUE_GC_HEAD : 0));
	off = (long)((intptr_t)addr - (intptr_t)o);
	d->object = (uintptr_t)o;
	d->field_offset = off;
	snprintf(d->type, sizeof(d->type), "%s", glue_tag_names[tag]);
	{
		const char *f = "?";
		switch (tag) {
		case TAG_STR:
			if (((PyASCIIObject *)o)->state.ascii) {
				f = field_name(str_fields, N(str_fields), off);
				if (off >= (long)sizeof(PyASCIIObject))
					f = "data";
			} else {
				f = field_name(ustr_fields, N(ustr_fields), off);
				if (off >= (long)sizeof(PyCompactUnicodeObject))
					f = "data";
			}
			break;
		case TAG_BYTES: f = field_name(bytes_fields, N(bytes_fields), off); break;
		case TAG_INT: f = field_name(int_fields, N(int_fields), off); break;
		case TAG_FLOAT: f = field_name(float_fields, N(float_fields), off); break;
		case TAG_COMPLEX: f = field_name(complex_fields, N(complex_fields), off); break;
		case TAG_TUPLE:
			f = field_name(tuple_fields, N(tuple_fields), off);
			if (off >= (long)offsetof(PyTupleObject, ob_item)) {
				snprintf(d->field, sizeof(d->field), "ob_item[%ld]",
					 (off - (long)offsetof(PyTupleObject, ob_item)) / (long)sizeof(PyObject *));
				f = NULL;
			}
			break;
		case TAG_FROZENSET: f = field_name(set_fields, N(set_fields), off); break;
		case TAG_DICT: f = field_name(dict_fields, N(dict_fields), off); break;
		case TAG_PROXY: f = field_name(proxy_fields, N(proxy_fields), off); break;
		case TAG_CODE: {
			PyCodeObject *co = (PyCodeObject *)o;
			char q[100], fn[200];
			const char *tail;
			size_t fl;
			f = field_name(code_fields, N(code_fields), off);
			str_text(co->co_qualname, q, sizeof(q), 0);
			str_text(co->co_filename, fn, sizeof(fn), 0);
			/* The end of a path says more than its start. */
			fl = strlen(fn);
			tail = fl > 48 ? fn + fl - 48 : fn;
			snprintf(d->code, sizeof(d->code), "%s (%s%s:%d)", q, fl > 48 ? "..." : "", tail,
				 co->co_firstlineno);
			break;
		}
		default: f = field_name(head_fields, N(head_fields), off); break;
		}
		if (f)
			snprintf(d->field, sizeof(d->field), "%s", f);
	}
	short_repr(o, tag, d->repr, sizeof(d->repr));
	return 0;
}

/* JSON string body: escape quotes, backslashes and control characters. */
static size_t json_str(char *out, size_t pos, size_t cap, const char *s)
{
	for (; *s && pos + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[pos++] = '\\';
			out[pos++] = (char)c;
		} else if (c < 0x20) {
			pos += (size_t)snprintf(out + pos, cap - pos, "\\u%04x", c);
		} else {
			out[pos++] = (char)c;
		}
	}
	out[pos] = 0;
	return pos;
}

int glue_desc_json(const struct glue_desc *d, char *buf, size_t len)
{
	static const char *keys[] = { "type", "field", "repr", "code" };
	const char *vals[] = { d->type, d->field, d->repr, d->code };
	size_t pos = 0;

	if (len < 64)
		return -ENOSPC;
	buf[pos++] = '{';
	for (int i = 0; i < 4; i++) {
		if ((i == 3 && !d->code[0]) || (i == 2 && d->code[0]))
			continue; /* for code, "code" says more than the repr */
		pos += (size_t)snprintf(buf + pos, len - pos, "%s\"%s\":\"", i ? "," : "", keys[i]);
		if (pos >= len - 8)
			break;
		pos = json_str(buf, pos, len - 4, vals[i]);
		buf[pos++] = '"';
	}
	if (pos + 2 > len)
		pos = len - 2;
	buf[pos++] = '}';
	buf[pos] = 0;
	return (int)pos;
}

/* eternal_describe_fn: the library calls this when it writes a trap record.
 * It may run on the library's handler thread, so it must not touch the GIL. */
int glue_describe_cb(const struct eternal_trap_event *ev, char *buf, size_t len, void *arg)
{
	struct glue_desc d;

	(void)arg;
	glue_describe_addr((uintptr_t)ev->addr, &d);
	return glue_desc_json(&d, buf, len);
}
