/* tlog.c - the JSON-lines trap log: one file per pid in a directory, one
 * record per line, formatted without malloc or stdio so strict mode can use it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A bounded string builder: every put is a no-op once the buffer is full,
 * and the caller sees the overflow at the end. */
struct sb {
	char *p;
	size_t len, n;
	bool over;
};

static void put_mem(struct sb *b, const char *s, size_t n)
{
	if (b->over || b->n + n >= b->len) {
		b->over = true;
		return;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void put_str(struct sb *b, const char *s) { put_mem(b, s, strlen(s)); }

static void put_u64(struct sb *b, uint64_t v)
{
	char t[24];
	int i = sizeof(t);
	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put_mem(b, t + i, sizeof(t) - (size_t)i);
}

static void put_i64(struct sb *b, int64_t v)
{
	if (v < 0) {
		put_mem(b, "-", 1);
		put_u64(b, (uint64_t)0 - (uint64_t)v);
	} else {
		put_u64(b, (uint64_t)v);
	}
}

static void put_hex(struct sb *b, uint64_t v)
{
	char t[18];
	int i = sizeof(t);
	do {
		t[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	t[--i] = 'x';
	t[--i] = '0';
	put_mem(b, t + i, sizeof(t) - (size_t)i);
}

/* JSON string with escapes; NULL becomes null. */
static void put_json(struct sb *b, const char *s)
{
	if (!s) {
		put_str(b, "null");
		return;
	}
	put_mem(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			put_mem(b, e, 2);
		} else if (c < 0x20) {
			char e[6] = { '\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15] };
			put_mem(b, e, 6);
		} else {
			put_mem(b, (const char *)&c, 1);
		}
	}
	put_mem(b, "\"", 1);
}

static void put_key(struct sb *b, const char *k)
{
	put_mem(b, ",\"", 2);
	put_str(b, k);
	put_mem(b, "\":", 2);
}

/* "{...}" with something inside: spliced into the record as its members. */
static bool is_json_object(const char *d)
{
	size_t n = d ? strlen(d) : 0;

	return n > 2 && d[0] == '{' && d[n - 1] == '}';
}

static const char *tier_name(int32_t t)
{
	return t == ETERNAL_TIER_SEALED ? "sealed" : t == ETERNAL_TIER_COW ? "cow" : "none";
}

ETERNAL_HIDDEN int _eternal_tlog_format(char *buf, size_t len, const struct eternal_trap_event *ev,
					const char *engine, const char *sym, const char *const *frame_syms,
					const char *desc)
{
	struct sb b = { buf, len, 0, false };
	put_str(&b, "{\"seq\":");
	put_u64(&b, ev->seq);
	put_key(&b, "time_ns");
	put_u64(&b, ev->time_ns);
	put_key(&b, "pid");
	put_i64(&b, ev->pid);
	put_key(&b, "tid");
	put_i64(&b, ev->tid);
	put_key(&b, "engine");
	put_json(&b, engine);
	put_key(&b, "kernel");
	put_u64(&b, ev->kernel);
	put_key(&b, "tier");
	put_json(&b, tier_name(ev->tier));
	put_key(&b, "address");
	put_mem(&b, "\"", 1);
	put_hex(&b, ev->addr);
	put_mem(&b, "\"", 1);
	put_key(&b, "offset");
	put_u64(&b, ev->offset);
	put_key(&b, "tag");
	put_u64(&b, ev->tag);
	put_key(&b, "block_start");
	put_mem(&b, "\"", 1);
	put_hex(&b, ev->block_start);
	put_mem(&b, "\"", 1);
	put_key(&b, "block_size");
	put_u64(&b, ev->block_size);
	put_key(&b, "block_offset");
	put_u64(&b, ev->block_offset);
	put_key(&b, "pc");
	put_mem(&b, "\"", 1);
	put_hex(&b, ev->pc);
	put_mem(&b, "\"", 1);
	put_key(&b, "writer");
	put_json(&b, sym);
	put_key(&b, "frames");
	put_mem(&b, "[", 1);
	for (uint32_t i = 0; i < ev->nframes && i < ETERNAL_TRAP_MAX_FRAMES; i++) {
		if (i)
			put_mem(&b, ",", 1);
		put_mem(&b, "\"", 1);
		put_hex(&b, ev->frames[i]);
		put_mem(&b, "\"", 1);
	}
	put_mem(&b, "]", 1);
	if (frame_syms) {
		put_key(&b, "frame_syms");
		put_mem(&b, "[", 1);
		for (uint32_t i = 0; i < ev->nframes && i < ETERNAL_TRAP_MAX_FRAMES; i++) {
			if (i)
				put_mem(&b, ",", 1);
			put_json(&b, frame_syms[i]);
		}
		put_mem(&b, "]", 1);
	}
	if (is_json_object(desc)) {
		/* A describer that answers with a JSON object (the CPython glue:
		 * type, field, repr, code) names the record's own keys. */
		put_mem(&b, ",", 1);
		put_mem(&b, desc + 1, strlen(desc) - 2);
	} else {
		put_key(&b, "desc");
		put_json(&b, desc);
	}
	put_mem(&b, "}\n", 2);
	if (b.over)
		return -ENOSPC;
	buf[b.n] = 0;
	return (int)b.n;
}

ETERNAL_HIDDEN int _eternal_tlog_strict_msg(char *buf, size_t len, const struct eternal_trap_event *ev,
					    const char *desc)
{
	struct sb b = { buf, len, 0, false };
	put_str(&b, "strict: write to the sealed tier at ");
	put_hex(&b, ev->addr);
	put_str(&b, " (tier offset ");
	put_u64(&b, ev->offset);
	put_str(&b, "): ");
	if (ev->block_start) {
		put_str(&b, "block ");
		put_hex(&b, ev->block_start);
		put_str(&b, " + ");
		put_u64(&b, ev->block_offset);
		put_str(&b, " (size ");
		put_u64(&b, ev->block_size);
		put_str(&b, ", tag ");
		put_u64(&b, ev->tag);
		put_str(&b, ")");
	} else {
		put_str(&b, "no live block");
	}
	if (desc) {
		put_str(&b, " ");
		put_str(&b, desc);
	}
	put_str(&b, ", pc ");
	put_hex(&b, ev->pc);
	put_str(&b, ", pid ");
	put_i64(&b, ev->pid);
	put_str(&b, " tid ");
	put_i64(&b, ev->tid);
	put_str(&b, "; SIGSEGV follows");
	if (b.over)
		return -ENOSPC;
	buf[b.n] = 0;
	return (int)b.n;
}

/* One write(2) per record: O_APPEND keeps lines whole even when records come
 * from several threads, and nothing sits in a user-space buffer. Measured
 * against io_uring in bench/trap_cost.c (see bench/results). */
ETERNAL_HIDDEN int _eternal_tlog_write(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/* <dir>/<pid>.jsonl, creating dir (one level) if needed. Returns fd or -errno. */
ETERNAL_HIDDEN int _eternal_tlog_open(const char *dir, pid_t pid)
{
	char path[4096];
	struct sb b = { path, sizeof(path), 0, false };
	if (!dir || !*dir)
		return -EINVAL;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	put_str(&b, dir);
	put_str(&b, "/");
	put_i64(&b, pid);
	put_str(&b, ".jsonl");
	if (b.over)
		return -ENAMETOOLONG;
	path[b.n] = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}
