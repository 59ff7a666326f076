/* fuzz-model.h - the reference model shared by the allocator fuzzers: every
 * live block as the caller sees it, and checks of libeternal's answers against it. */
#ifndef ETERNAL_FUZZ_MODEL_H
#define ETERNAL_FUZZ_MODEL_H

#define _GNU_SOURCE
#include "eternal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A failed check must crash so that libFuzzer saves the input. */
#define FZ_CHECK(cond)                                                                 \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: model check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                       \
		}                                                                      \
	} while (0)
#define FZ_RC(expr, want)                                                              \
	do {                                                                           \
		long _rc = (long)(expr), _w = (long)(want);                            \
		if (_rc != _w) {                                                       \
			fprintf(stderr, "%s:%d: %s = %ld, model expects %ld\n", __FILE__, \
				__LINE__, #expr, _rc, _w);                             \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* Input reader: running out of bytes yields zeros, so every input is valid. */
struct fz_in {
	const uint8_t *d;
	size_t n;
};

static inline uint64_t fz_take(struct fz_in *in, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++) {
		v <<= 8;
		if (in->n) {
			v |= *in->d++;
			in->n--;
		}
	}
	return v;
}

#define FZ_MAX_LIVE 384

struct fz_block {
	uintptr_t p;
	size_t req, size; /* requested, and usable as block_find reported it */
	int tier;
	uint8_t tag;
	uint8_t large;
	uint32_t seed;
};

struct fz_model {
	eternal_region *r;
	struct fz_block b[FZ_MAX_LIVE];
	int n;
	int sealed; /* 0 warm-up, else the mode + 1 */
	uint64_t failures[ETERNAL_NTIERS];
	uintptr_t lo[ETERNAL_NTIERS], hi[ETERNAL_NTIERS];
	uint32_t next_seed;
};

/* The documented class table (alloc.c): 16..1024 by 16, then four steps per
 * power of two up to 16 KiB. Used to predict which blocks are "large". */
static inline int fz_is_large(size_t size, size_t align)
{
	if (align < ETERNAL_ALIGN)
		align = ETERNAL_ALIGN;
	if (size > 16384)
		return 1;
	for (size_t s = 16; s <= 1024; s += 16)
		if (s >= size && s % align == 0)
			return 0;
	for (size_t p = 1024; p < 16384; p *= 2)
		for (size_t k = 1; k <= 4; k++) {
			size_t s = p + k * (p / 4);

			if (s >= size && s % align == 0)
				return 0;
		}
	return 1;
}

/* Bytes written into a block: all of a small block, a sample of a big one
 * (the head, the tail and every 509th byte) to keep an execution fast. The
 * loops visit exactly those bytes: a per-byte test costs too much under
 * coverage instrumentation. */
#define FZ_DENSE 65536
#define FZ_EDGE 4096
#define FZ_STRIDE 509

static inline uint8_t fz_byte(uint32_t seed, size_t i)
{
	return (uint8_t)((i * 2654435761u) ^ seed ^ (seed >> 8));
}

/* Runs @body with @i set to each sampled index of a block of @size bytes. */
#define FZ_FOR_SAMPLED(size, i, body)                                                  \
	do {                                                                           \
		size_t _sz = (size);                                                   \
		if (_sz <= FZ_DENSE) {                                                 \
			for (size_t i = 0; i < _sz; i++) { body; }                     \
		} else {                                                               \
			for (size_t i = 0; i < FZ_EDGE; i++) { body; }                 \
			for (size_t i = FZ_EDGE; i < _sz - FZ_EDGE; i += FZ_STRIDE) { body; } \
			for (size_t i = _sz - FZ_EDGE; i < _sz; i++) { body; }         \
		}                                                                      \
	} while (0)

static inline void fz_fill(const struct fz_block *b)
{
	uint8_t *p = (uint8_t *)b->p;

	FZ_FOR_SAMPLED(b->size, i, p[i] = fz_byte(b->seed, i));
}

static inline void fz_check_contents(const struct fz_block *b)
{
	const uint8_t *p = (const uint8_t *)b->p;

	FZ_FOR_SAMPLED(b->size, i, if (p[i] != fz_byte(b->seed, i)) {
		fprintf(stderr, "block %#lx+%zu (size %zu tier %d) lost its contents\n",
			(unsigned long)b->p, i, b->size, b->tier);
		abort();
	});
}

/* The whole usable size must read as zero (memcmp: not instrumented). */
static inline void fz_check_zero(const void *p, size_t size)
{
	static const uint8_t zero[65536];

	for (size_t off = 0; off < size; off += sizeof(zero)) {
		size_t n = size - off < sizeof(zero) ? size - off : sizeof(zero);

		if (memcmp((const char *)p + off, zero, n)) {
			fprintf(stderr, "new block %p+%zu not zero in [%zu, %zu)\n", p, size, off, off + n);
			abort();
		}
	}
}

static inline int fz_tier_of(const struct fz_model *m, uintptr_t a)
{
	for (int t = 0; t < ETERNAL_NTIERS; t++)
		if (a >= m->lo[t] && a < m->hi[t])
			return t;
	return -1;
}

/* The live block holding @a, or -1. */
static inline int fz_holder(const struct fz_model *m, uintptr_t a)
{
	for (int i = 0; i < m->n; i++)
		if (a - m->b[i].p < m->b[i].size)
			return i;
	return -1;
}

static inline int fz_find_start(const struct fz_model *m, uintptr_t a)
{
	for (int i = 0; i < m->n; i++)
		if (m->b[i].p == a)
			return i;
	return -1;
}

/* block_find on any address must agree with the model. */
static inline void fz_check_find(const struct fz_model *m, uintptr_t a)
{
	struct eternal_block eb;
	int rc = eternal_block_find(m->r, (const void *)a, &eb);
	int t = fz_tier_of(m, a), h;

	FZ_RC(eternal_tier_of(m->r, (const void *)a), t < 0 ? ETERNAL_TIER_NONE : t);
	if (t < 0) {
		FZ_RC(rc, -EFAULT);
		return;
	}
	h = fz_holder(m, a);
	if (h < 0) {
		if (rc == 0)
			fprintf(stderr, "address %#lx resolves to %p+%zu, which the model says is not live\n",
				(unsigned long)a, eb.start, eb.size);
		FZ_RC(rc, -ENOENT);
		return;
	}
	FZ_RC(rc, 0);
	FZ_CHECK((uintptr_t)eb.start == m->b[h].p);
	FZ_CHECK(eb.size == m->b[h].size);
	FZ_CHECK((int)eb.tier == m->b[h].tier);
	FZ_CHECK(eb.tag == m->b[h].tag);
}

static inline void fz_model_open(struct fz_model *m, const struct eternal_region_opts *o)
{
	memset(m, 0, sizeof(*m));
	FZ_RC(eternal_region_create(o, &m->r), 0);
	for (int t = 0; t < ETERNAL_NTIERS; t++)
		FZ_RC(eternal_tier_bounds(m->r, (enum eternal_tier)t, &m->lo[t], &m->hi[t]), 0);
	FZ_CHECK(m->lo[0] < m->hi[0] && m->hi[0] <= m->lo[1] && m->lo[1] < m->hi[1]);
	FZ_CHECK(eternal_tier_fd(m->r, ETERNAL_TIER_SEALED) >= 0);
	FZ_RC(eternal_tier_fd(m->r, ETERNAL_TIER_COW), -ENOENT);
	m->next_seed = 0x9e3779b9u;
}

/* Allocate and check everything the API promises about the new block. */
static inline void fz_alloc(struct fz_model *m, int tier, size_t size, size_t align, uint8_t tag)
{
	void *out = (void *)1;
	struct eternal_block eb;
	struct fz_block *b;
	size_t eff = align ? align : ETERNAL_ALIGN;
	int rc = eternal_alloc(m->r, (enum eternal_tier)tier, size, align, tag, &out);

	if ((unsigned)tier >= ETERNAL_NTIERS || size == 0 || (align & (align - 1)) || align > ETERNAL_MAX_ALIGN) {
		FZ_RC(rc, -EINVAL);
		FZ_CHECK(out == NULL);
		return;
	}
	if (tier == ETERNAL_TIER_SEALED && m->sealed) {
		/* An oversized request is refused before the state is looked
		 * at; either answer sends the caller to its own heap. */
		if (!(size > (1ul << 40) && rc == -ENOMEM))
			FZ_RC(rc, -EROFS);
		FZ_CHECK(out == NULL);
		return;
	}
	if (rc == -ENOMEM) {
		FZ_CHECK(out == NULL);
		if (size <= (1ul << 40)) /* larger requests are refused up front, uncounted */
			m->failures[tier]++;
		return;
	}
	FZ_RC(rc, 0);
	FZ_CHECK(m->n < FZ_MAX_LIVE);
	FZ_CHECK(out != NULL);
	if (eff < ETERNAL_ALIGN)
		eff = ETERNAL_ALIGN;
	FZ_CHECK(((uintptr_t)out & (eff - 1)) == 0);
	FZ_CHECK((uintptr_t)out >= m->lo[tier] && (uintptr_t)out + size <= m->hi[tier]);
	FZ_CHECK(eternal_contains(m->r, out));
	FZ_RC(eternal_block_find(m->r, out, &eb), 0);
	FZ_CHECK(eb.start == out && (int)eb.tier == tier && eb.tag == tag);
	FZ_CHECK(eb.size >= size && eb.size % 16 == 0);
	/* No overlap with any live block. */
	for (int i = 0; i < m->n; i++)
		if ((uintptr_t)out < m->b[i].p + m->b[i].size && m->b[i].p < (uintptr_t)out + eb.size) {
			fprintf(stderr, "new block %p+%zu overlaps live %#lx+%zu\n", out, eb.size,
				(unsigned long)m->b[i].p, m->b[i].size);
			abort();
		}
	/* Zeroed, all of the usable size. */
	fz_check_zero(out, eb.size);
	b = &m->b[m->n++];
	b->p = (uintptr_t)out;
	b->req = size;
	b->size = eb.size;
	b->tier = tier;
	b->tag = tag;
	b->large = (uint8_t)fz_is_large(size, eff);
	b->seed = m->next_seed;
	m->next_seed = m->next_seed * 1664525u + 1013904223u;
	fz_fill(b);
}

static inline void fz_remove(struct fz_model *m, int i)
{
	m->b[i] = m->b[--m->n];
}

/* Free the live block @i, or a bogus pointer near it when @bogus. */
static inline void fz_free(struct fz_model *m, int i, int bogus, size_t off)
{
	struct fz_block *b = &m->b[i];
	uintptr_t a = bogus ? b->p + off : b->p;
	int t = fz_tier_of(m, a), rc, h;
	struct eternal_block eb;

	fz_check_contents(b);
	rc = eternal_free(m->r, (void *)a);
	if (t < 0) {
		FZ_RC(rc, -EFAULT);
		return;
	}
	if (t == ETERNAL_TIER_SEALED && m->sealed) {
		FZ_RC(rc, -EROFS);
		return;
	}
	h = fz_find_start(m, a);
	if (h < 0) {
		FZ_RC(rc, -EINVAL);
		return;
	}
	FZ_RC(rc, 0);
	fz_remove(m, h);
	/* A freed start no longer resolves to itself; a second free is refused. */
	rc = eternal_block_find(m->r, (void *)a, &eb);
	FZ_CHECK(rc == -ENOENT || (rc == 0 && (uintptr_t)eb.start != a));
	FZ_RC(eternal_free(m->r, (void *)a), -EINVAL);
}

static inline void fz_set_tag(struct fz_model *m, uintptr_t a, uint8_t tag)
{
	int t = fz_tier_of(m, a), h = fz_find_start(m, a);
	int rc = eternal_block_set_tag(m->r, (void *)a, tag);

	if (t < 0 || h < 0) {
		FZ_RC(rc, -EINVAL);
		return;
	}
	if (t == ETERNAL_TIER_SEALED && m->sealed) {
		FZ_RC(rc, -EROFS);
		return;
	}
	FZ_RC(rc, 0);
	m->b[h].tag = tag;
}

struct fz_walk {
	const struct fz_model *m;
	int tier, count;
	uintptr_t last;
};

static int fz_walk_fn(const struct eternal_block *eb, void *arg)
{
	struct fz_walk *w = arg;
	int h = fz_find_start(w->m, (uintptr_t)eb->start);

	FZ_CHECK(h >= 0);
	FZ_CHECK((uintptr_t)eb->start > w->last || w->count == 0); /* address order */
	FZ_CHECK(eb->size == w->m->b[h].size && (int)eb->tier == w->tier && eb->tag == w->m->b[h].tag);
	FZ_CHECK(w->m->b[h].tier == w->tier);
	w->last = (uintptr_t)eb->start;
	w->count++;
	return 0;
}

static int fz_stop_fn(const struct eternal_block *eb, void *arg)
{
	(void)eb;
	(void)arg;
	return 42;
}

/* Stats and foreach against the model. */
static inline void fz_check_stats(struct fz_model *m)
{
	static struct eternal_stats st;
	uint64_t blocks[ETERNAL_NTIERS] = { 0 }, used[ETERNAL_NTIERS] = { 0 }, large[ETERNAL_NTIERS] = { 0 };
	static uint64_t tb[ETERNAL_NTIERS][256], tby[ETERNAL_NTIERS][256];

	memset(tb, 0, sizeof(tb));
	memset(tby, 0, sizeof(tby));
	for (int i = 0; i < m->n; i++) {
		struct fz_block *b = &m->b[i];

		blocks[b->tier]++;
		used[b->tier] += b->size;
		large[b->tier] += b->large;
		tb[b->tier][b->tag]++;
		tby[b->tier][b->tag] += b->size;
	}
	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	FZ_RC(eternal_stats_get(m->r, &st), 0);
	FZ_RC(st.state, m->sealed ? ETERNAL_STATE_SEALED : ETERNAL_STATE_WARMUP);
	if (m->sealed)
		FZ_RC(st.mode, m->sealed - 1);
	for (int t = 0; t < ETERNAL_NTIERS; t++) {
		struct eternal_tier_stats *ts = &st.tier[t];
		struct fz_walk w = { m, t, 0, 0 };

		FZ_RC(ts->blocks, blocks[t]);
		FZ_RC(ts->used, used[t]);
		FZ_RC(ts->large_blocks, large[t]);
		FZ_RC(ts->alloc_failures, m->failures[t]);
		FZ_RC(ts->reserved, m->hi[t] - m->lo[t]);
		FZ_CHECK(ts->committed <= ts->reserved);
		FZ_CHECK(ts->used <= ts->committed);
		FZ_RC(ts->free, ts->committed - ts->used);
		FZ_CHECK(ts->holes <= ts->committed);
		FZ_CHECK(ts->fragmentation >= 0.0 && ts->fragmentation <= 1.0);
		FZ_CHECK(memcmp(st.tag_blocks[t], tb[t], sizeof(tb[t])) == 0);
		FZ_CHECK(memcmp(st.tag_bytes[t], tby[t], sizeof(tby[t])) == 0);
		FZ_RC(eternal_block_foreach(m->r, (enum eternal_tier)t, fz_walk_fn, &w), 0);
		FZ_RC(w.count, blocks[t]);
		if (blocks[t])
			FZ_RC(eternal_block_foreach(m->r, (enum eternal_tier)t, fz_stop_fn, NULL), 42);
	}
	/* An old caller's short struct gets the prefix only. */
	{
		struct eternal_stats small;

		memset(&small, 0xab, sizeof(small));
		small.sz = offsetof(struct eternal_stats, tag_blocks);
		FZ_RC(eternal_stats_get(m->r, &small), 0);
		FZ_CHECK(small.tier[1].blocks == blocks[1]);
		FZ_CHECK(((unsigned char *)&small)[offsetof(struct eternal_stats, tag_blocks)] == 0xab);
	}
}

static inline void fz_check_all_contents(const struct fz_model *m)
{
	for (int i = 0; i < m->n; i++)
		fz_check_contents(&m->b[i]);
}

static inline void fz_seal(struct fz_model *m, int mode)
{
	int rc = eternal_seal(m->r, (enum eternal_mode)mode, NULL);

	if (m->sealed) {
		FZ_RC(rc, -EALREADY);
		return;
	}
	FZ_RC(rc, 0);
	m->sealed = mode + 1;
	fz_check_all_contents(m);
}

/* Close, then every call must see a tombstone. */
void fuzz_reclaim_tombstones(void); /* region_reclaim.c */

static inline void fz_model_close(struct fz_model *m)
{
	void *out = (void *)1;
	struct eternal_block eb;
	struct eternal_stats st = { .sz = sizeof(st) };
	uintptr_t any = m->lo[1];

	fz_check_all_contents(m);
	FZ_RC(eternal_region_close(m->r), 0);
	FZ_RC(eternal_region_close(m->r), -EBADF);
	FZ_RC(eternal_alloc(m->r, ETERNAL_TIER_COW, 16, 0, 0, &out), -EBADF);
	FZ_CHECK(out == NULL);
	FZ_RC(eternal_free(m->r, (void *)any), -EBADF);
	FZ_RC(eternal_block_find(m->r, (void *)any, &eb), -EBADF);
	FZ_RC(eternal_stats_get(m->r, &st), -EBADF);
	FZ_RC(eternal_seal(m->r, ETERNAL_MODE_STRICT, NULL), -EBADF);
	FZ_CHECK(!eternal_contains(m->r, (void *)any));
	fuzz_reclaim_tombstones();
}

#endif
