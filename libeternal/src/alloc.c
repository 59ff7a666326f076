/* alloc.c - the allocator inside each tier: size classes carved from 64 KiB
 * spans, a bump pointer for large blocks, and the allocation-start map. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Class sizes: 16..1024 in steps of 16, then four steps per power of two up
 * to SMALL_MAX. Every size is a multiple of 16, so slots keep the default
 * alignment; a class whose size is a multiple of a larger power of two keeps
 * that alignment too, because spans are 64 KiB aligned. */
static uint32_t class_size[NCLASSES];
static uint8_t class_of16[SMALL_MAX / GRANULE + 1]; /* (size+15)/16 -> class */
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;

static void classes_init(void)
{
	int n = 0;

	for (uint32_t s = 16; s <= 1024; s += 16)
		class_size[n++] = s;
	for (uint32_t p = 1024; p < SMALL_MAX; p *= 2)
		for (uint32_t k = 1; k <= 4; k++)
			class_size[n++] = p + k * (p / 4);
	for (uint32_t g = 0, c = 0; g <= SMALL_MAX / GRANULE; g++) {
		while (class_size[c] < g * GRANULE)
			c++;
		class_of16[g] = (uint8_t)c;
	}
}

_Static_assert(1024 / 16 + 4 * 4 == NCLASSES, "class table size");

static inline size_t granule_of(const struct tier *t, uintptr_t p)
{
	return (p - t->base) >> GRANULE_SHIFT;
}

static inline void bit_set(uint64_t *map, size_t i)
{
	map[i >> 6] |= 1ull << (i & 63);
}

static inline void bit_clear(uint64_t *map, size_t i)
{
	map[i >> 6] &= ~(1ull << (i & 63));
}

static inline int bit_test(const uint64_t *map, size_t i)
{
	return (map[i >> 6] >> (i & 63)) & 1;
}

/* Commit [base, end) of a tier. Both tiers warm up in private anonymous
 * memory (the sealed tier's pages move into its memfd when it is sealed), so
 * committing is bookkeeping plus one call that faults the pages in. */
static int commit_to(struct eternal_region *r, struct tier *t, uintptr_t end)
{
	size_t need = end - t->base, want, old = t->committed;

	if (need <= old)
		return 0;
	want = (need + r->grow_step - 1) / r->grow_step * r->grow_step;
	if (want > t->limit - t->base)
		want = t->limit - t->base;
	/* The caller is about to write these pages: one call is cheaper than
	 * a fault each. Failure only means they fault in one by one. */
	madvise((void *)(t->base + old), want - old, MADV_POPULATE_WRITE);
	t->committed = want;
	t->st.committed = want;
	/* Pages the cow tier gains after the seal are trapped like the rest. */
	if (atomic_load(&r->state) == ETERNAL_STATE_SEALED)
		_eternal_trap_grow(r, t->id, t->base + old, t->base + want);
	return 0;
}

static void account(struct tier *t, uint8_t tag, size_t size, int sign, int large)
{
	if (sign > 0) {
		t->st.used += size;
		t->st.blocks++;
		t->st.large_blocks += large;
		t->tag_blocks[tag]++;
		t->tag_bytes[tag] += size;
	} else {
		t->st.used -= size;
		t->st.blocks--;
		t->st.large_blocks -= large;
		t->tag_blocks[tag]--;
		t->tag_bytes[tag] -= size;
	}
}

static void mark_start(struct tier *t, uintptr_t p, uint8_t tag)
{
	size_t g = granule_of(t, p);

	bit_set(t->starts, g);
	t->tags[g] = tag;
}

/* ---- holes: freed large blocks and alignment gaps, sorted by address ---- */

static int hole_insert(struct tier *t, uintptr_t start, size_t size)
{
	size_t i = 0;

	if (!size)
		return 0;
	while (i < t->nholes && t->holes[i].start < start)
		i++;
	/* Coalesce with neighbours so first fit sees the largest runs. */
	if (i > 0 && t->holes[i - 1].start + t->holes[i - 1].size == start) {
		t->holes[i - 1].size += size;
		if (i < t->nholes && start + size == t->holes[i].start) {
			t->holes[i - 1].size += t->holes[i].size;
			memmove(&t->holes[i], &t->holes[i + 1], (t->nholes - i - 1) * sizeof(*t->holes));
			t->nholes--;
		}
		return 0;
	}
	if (i < t->nholes && start + size == t->holes[i].start) {
		t->holes[i].start = start;
		t->holes[i].size += size;
		return 0;
	}
	if (t->nholes == t->cap_holes) {
		size_t cap = t->cap_holes ? t->cap_holes * 2 : 64;
		struct hole *h = realloc(t->holes, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		t->holes = h;
		t->cap_holes = cap;
	}
	memmove(&t->holes[i + 1], &t->holes[i], (t->nholes - i) * sizeof(*t->holes));
	t->holes[i].start = start;
	t->holes[i].size = size;
	t->nholes++;
	return 0;
}

/* First fit with alignment; the unused front and back stay holes. */
static uintptr_t hole_take(struct tier *t, size_t size, size_t align)
{
	for (size_t i = 0; i < t->nholes; i++) {
		struct hole h = t->holes[i];
		uintptr_t p = (h.start + align - 1) & ~(uintptr_t)(align - 1);

		if (p + size > h.start + h.size)
			continue;
		/* Removing the hole and re-inserting the remainders keeps the
		 * array sorted without special cases. */
		memmove(&t->holes[i], &t->holes[i + 1], (t->nholes - i - 1) * sizeof(*t->holes));
		t->nholes--;
		hole_insert(t, h.start, p - h.start);
		hole_insert(t, p + size, h.start + h.size - (p + size));
		return p;
	}
	return 0;
}

static void spans_mark(struct tier *t, uintptr_t start, uintptr_t end, uint8_t kind)
{
	for (size_t s = (start - t->base) >> SPAN_SHIFT; s <= (end - 1 - t->base) >> SPAN_SHIFT; s++)
		if (t->spans[s].kind != SPAN_SMALL)
			t->spans[s].kind = kind;
}

static int alloc_large(struct eternal_region *r, struct tier *t, size_t size, size_t align,
		       uint8_t tag, void **out)
{
	uintptr_t p, end;
	int rc;

	size = (size + GRANULE - 1) & ~(size_t)(GRANULE - 1);
	p = hole_take(t, size, align);
	if (p) {
		end = p + size;
	} else {
		/* Bump within the open large run; it ends at span_bump, so a
		 * run that grows simply claims the next spans. */
		p = (t->large_bump + align - 1) & ~(uintptr_t)(align - 1);
		end = p + size;
		if (end > t->limit || end < p) {
			t->st.alloc_failures++;
			return -ENOMEM;
		}
		rc = commit_to(r, t, end);
		if (rc < 0) {
			t->st.alloc_failures++;
			return rc;
		}
		spans_mark(t, t->large_bump, end, SPAN_LARGE);
		/* The gap left by alignment stays reusable. */
		hole_insert(t, t->large_bump, p - t->large_bump);
		t->large_bump = end;
		if (end - t->base > t->span_bump)
			t->span_bump = (end - t->base + SPAN_SIZE - 1) & ~(SPAN_SIZE - 1);
	}
	/* Bytes past the high-water mark are fresh memfd pages, already zero. */
	if (p < t->dirty_end)
		memset((void *)p, 0, (end < t->dirty_end ? end : t->dirty_end) - p);
	if (end > t->dirty_end)
		t->dirty_end = end;
	mark_start(t, p, tag);
	bit_set(t->ends, granule_of(t, end - 1));
	account(t, tag, size, +1, 1);
	*out = (void *)p;
	return 0;
}

/* Take a fresh span for class @c. Spans come from span_bump, which never
 * moves back, so a new span is always untouched (zero) memory. */
static int span_new(struct eternal_region *r, struct tier *t, int c)
{
	uintptr_t s = t->base + t->span_bump;
	struct span_meta *m;
	int rc;

	if (s + SPAN_SIZE > t->limit || s + SPAN_SIZE < s) {
		t->st.alloc_failures++;
		return -ENOMEM;
	}
	rc = commit_to(r, t, s + SPAN_SIZE);
	if (rc < 0) {
		t->st.alloc_failures++;
		return rc;
	}
	/* The open large run ends here; its tail is left to later large blocks. */
	hole_insert(t, t->large_bump, s - t->large_bump);
	m = &t->spans[(s - t->base) >> SPAN_SHIFT];
	m->kind = SPAN_SMALL;
	m->cls = (uint8_t)c;
	m->bump = 0;
	m->nfree = 0;
	t->cur_span[c] = s;
	t->span_bump += SPAN_SIZE;
	t->large_bump = t->base + t->span_bump;
	return 0;
}

static int alloc_small(struct eternal_region *r, struct tier *t, int c, uint8_t tag, void **out)
{
	uint32_t size = class_size[c];
	uintptr_t p;
	void *head = t->freelist[c];

	if (head) {
		/* The next pointer lives in the freed slot itself. */
		memcpy(&t->freelist[c], head, sizeof(void *));
		memset(head, 0, size);
		p = (uintptr_t)head;
	} else {
		uintptr_t s = t->cur_span[c];
		struct span_meta *m;

		if (!s || t->spans[(s - t->base) >> SPAN_SHIFT].bump >= SPAN_SIZE / size) {
			int rc = span_new(r, t, c);

			if (rc < 0)
				return rc;
			s = t->cur_span[c];
		}
		m = &t->spans[(s - t->base) >> SPAN_SHIFT];
		p = s + (uintptr_t)m->bump * size;
		m->bump++;
	}
	mark_start(t, p, tag);
	account(t, tag, size, +1, 0);
	*out = (void *)p;
	return 0;
}

static int pick_class(size_t size, size_t align)
{
	int c;

	if (size > SMALL_MAX)
		return -1;
	c = class_of16[(size + GRANULE - 1) / GRANULE];
	for (; c < NCLASSES; c++)
		if ((class_size[c] & (align - 1)) == 0)
			return c;
	return -1;
}

int eternal_alloc(eternal_region *r, enum eternal_tier tier, size_t size, size_t align,
		  uint8_t tag, void **out)
{
	struct tier *t;
	int rc, c;

	if (!out)
		return -EINVAL;
	*out = NULL;
	rc = _eternal_check(r);
	if (rc < 0)
		return rc;
	if ((unsigned)tier >= ETERNAL_NTIERS || size == 0)
		return -EINVAL;
	if (align == 0)
		align = ETERNAL_ALIGN;
	if (align & (align - 1) || align > ETERNAL_MAX_ALIGN)
		return -EINVAL;
	if (align < ETERNAL_ALIGN)
		align = ETERNAL_ALIGN;
	if (size > (1ul << 40))
		return -ENOMEM;
	pthread_once(&classes_once, classes_init);

	_eternal_lock(r);
	t = &r->tier[tier];
	if (atomic_load(&r->state) == ETERNAL_STATE_CLOSED) {
		rc = -EBADF;
	} else if (tier == ETERNAL_TIER_SEALED && atomic_load(&r->state) != ETERNAL_STATE_WARMUP) {
		rc = -EROFS;
	} else {
		c = pick_class(size, align);
		rc = c >= 0 ? alloc_small(r, t, c, tag, out) : alloc_large(r, t, size, align, tag, out);
	}
	_eternal_unlock(r);
	return rc;
}

/* Resolve @p in a small span: start of its slot, or 0 if outside any slot. */
static uintptr_t small_slot(const struct tier *t, const struct span_meta *m, uintptr_t p, size_t *size)
{
	uintptr_t s = t->base + ((p - t->base) & ~(SPAN_SIZE - 1));
	size_t sz = class_size[m->cls];
	size_t slot = (p - s) / sz;

	if (slot >= m->bump)
		return 0;
	*size = sz;
	return s + slot * sz;
}

/* Resolve @p among large blocks: the nearest start at or before it (a large
 * block covers only spans marked large, so the search stops at any other),
 * if that block's end lies at or after @p. */
static uintptr_t large_find(const struct tier *t, uintptr_t p, size_t *size)
{
	const size_t words_per_span_shift = SPAN_SHIFT - GRANULE_SHIFT - 6;
	size_t pg = granule_of(t, p), w = pg >> 6, g, e;
	size_t nwords = (t->limit - t->base) >> (GRANULE_SHIFT + 6);
	uint64_t bits = t->starts[w] & (~0ull >> (63 - (pg & 63)));

	while (!bits) {
		if (w == 0)
			return 0;
		w--;
		if (t->spans[w >> words_per_span_shift].kind != SPAN_LARGE)
			return 0;
		bits = t->starts[w];
	}
	g = (w << 6) + 63 - (size_t)__builtin_clzll(bits);
	w = g >> 6;
	bits = t->ends[w] & (~0ull << (g & 63));
	while (!bits) {
		if (++w >= nwords)
			return 0;
		bits = t->ends[w];
	}
	e = (w << 6) + (size_t)__builtin_ctzll(bits);
	if (pg > e)
		return 0;
	*size = (e - g + 1) << GRANULE_SHIFT;
	return t->base + (g << GRANULE_SHIFT);
}

/* Locate the live block holding @p; lock-free reads only. */
static int block_lookup(const struct tier *t, uintptr_t p, struct eternal_block *b)
{
	const struct span_meta *m;
	uintptr_t start = 0;
	size_t size = 0;

	if (p >= t->base + t->span_bump)
		return -ENOENT;
	m = &t->spans[(p - t->base) >> SPAN_SHIFT];
	if (m->kind == SPAN_SMALL)
		start = small_slot(t, m, p, &size);
	else if (m->kind == SPAN_LARGE)
		start = large_find(t, p, &size);
	if (!start || !bit_test(t->starts, granule_of(t, start)))
		return -ENOENT;
	b->start = (void *)start;
	b->size = size;
	b->tier = t->id;
	b->tag = t->tags[granule_of(t, start)];
	return 0;
}

int eternal_block_find(const eternal_region *r, const void *p, struct eternal_block *out)
{
	const struct tier *t;
	int rc = _eternal_check(r);

	if (rc < 0)
		return rc;
	if (!out)
		return -EINVAL;
	t = _eternal_tier_get(r, (uintptr_t)p);
	if (!t)
		return -EFAULT;
	pthread_once(&classes_once, classes_init);
	return block_lookup(t, (uintptr_t)p, out);
}

int eternal_free(eternal_region *r, void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	struct eternal_block b;
	struct tier *t;
	int rc = _eternal_check(r);

	if (rc < 0)
		return rc;
	t = _eternal_tier_get(r, p);
	if (!t)
		return -EFAULT;
	pthread_once(&classes_once, classes_init);
	_eternal_lock(r);
	if (atomic_load(&r->state) == ETERNAL_STATE_CLOSED) {
		rc = -EBADF;
		goto out;
	}
	if (t->id == ETERNAL_TIER_SEALED && atomic_load(&r->state) != ETERNAL_STATE_WARMUP) {
		rc = -EROFS;
		goto out;
	}
	rc = block_lookup(t, p, &b);
	if (rc < 0 || (uintptr_t)b.start != p) {
		rc = -EINVAL;
		goto out;
	}
	bit_clear(t->starts, granule_of(t, p));
	if (t->spans[(p - t->base) >> SPAN_SHIFT].kind == SPAN_SMALL) {
		int c = t->spans[(p - t->base) >> SPAN_SHIFT].cls;

		memcpy(ptr, &t->freelist[c], sizeof(void *));
		t->freelist[c] = ptr;
		account(t, b.tag, b.size, -1, 0);
	} else {
		bit_clear(t->ends, granule_of(t, p + b.size - 1));
		account(t, b.tag, b.size, -1, 1);
		if (p + b.size == t->large_bump)
			t->large_bump = p; /* reused by the next bump */
		else
			hole_insert(t, p, b.size); /* on -ENOMEM the bytes stay unused */
	}
out:
	_eternal_unlock(r);
	return rc;
}

int eternal_block_set_tag(eternal_region *r, void *start, uint8_t tag)
{
	struct eternal_block b;
	struct tier *t;
	int rc = _eternal_check(r);

	if (rc < 0)
		return rc;
	t = _eternal_tier_get(r, (uintptr_t)start);
	if (!t)
		return -EINVAL;
	pthread_once(&classes_once, classes_init);
	_eternal_lock(r);
	rc = block_lookup(t, (uintptr_t)start, &b);
	if (rc < 0 || b.start != start) {
		rc = -EINVAL;
	} else if (t->id == ETERNAL_TIER_SEALED && atomic_load(&r->state) != ETERNAL_STATE_WARMUP) {
		/* Tags of a sealed tier are frozen with it: trap records
		 * resolved in children must agree with the parent's. */
		rc = -EROFS;
	} else {
		t->tag_blocks[b.tag]--;
		t->tag_bytes[b.tag] -= b.size;
		t->tag_blocks[tag]++;
		t->tag_bytes[tag] += b.size;
		t->tags[granule_of(t, (uintptr_t)start)] = tag;
	}
	_eternal_unlock(r);
	return rc;
}

int eternal_block_foreach(const eternal_region *r, enum eternal_tier tier, eternal_block_fn fn, void *arg)
{
	const struct tier *t;
	int rc = _eternal_check(r);

	if (rc < 0)
		return rc;
	if ((unsigned)tier >= ETERNAL_NTIERS || !fn)
		return -EINVAL;
	pthread_once(&classes_once, classes_init);
	t = &r->tier[tier];
	for (size_t s = 0; s < t->span_bump >> SPAN_SHIFT; s++) {
		const struct span_meta *m = &t->spans[s];
		uintptr_t sb = t->base + (s << SPAN_SHIFT);
		struct eternal_block b;

		if (m->kind == SPAN_SMALL) {
			size_t sz = class_size[m->cls];

			for (size_t i = 0; i < m->bump; i++) {
				uintptr_t p = sb + i * sz;

				if (!bit_test(t->starts, granule_of(t, p)))
					continue;
				b = (struct eternal_block){ (void *)p, sz, t->id, t->tags[granule_of(t, p)] };
				if ((rc = fn(&b, arg)) != 0)
					return rc;
			}
		} else if (m->kind == SPAN_LARGE) {
			size_t g0 = granule_of(t, sb), n = SPAN_SIZE >> GRANULE_SHIFT;

			for (size_t w = g0 >> 6; w < (g0 + n) >> 6; w++) {
				uint64_t bits = t->starts[w];

				while (bits) {
					size_t g = (w << 6) + (size_t)__builtin_ctzll(bits);

					bits &= bits - 1;
					if (block_lookup(t, t->base + (g << GRANULE_SHIFT), &b) < 0)
						continue;
					if ((rc = fn(&b, arg)) != 0)
						return rc;
				}
			}
		}
	}
	return 0;
}
