/* audit.c - audit mode's scan: PAGEMAP_SCAN over the async-write-protected
 * tiers lists the pages written since they were last protected. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"
#include "uffd-compat.h"

#include <errno.h>
#include <unistd.h>

#define SCAN_VEC 256

/* The block found running into the last page looked at: pages are visited
 * in address order, so a large block is looked up once, not once per page
 * (a lookup walks the start map back to the block's start). */
struct span_cache {
	uintptr_t start, end;
};

/* Live blocks overlapping [pg, pg + psz): block starts inside the page (one
 * bit per granule in the start map) plus the block that runs into it. */
static uint32_t blocks_on_page(const struct eternal_region *r, int k, uintptr_t pg, size_t psz,
			       struct span_cache *c)
{
	const struct tier *t = &r->tier[k];
	size_t g0 = (pg - t->base) >> GRANULE_SHIFT, g1 = g0 + (psz >> GRANULE_SHIFT);
	uint32_t n = 0;
	for (size_t g = g0; g < g1;) {
		if ((g & 63) == 0 && g + 64 <= g1) {
			n += (uint32_t)__builtin_popcountll(t->starts[g >> 6]);
			g += 64;
		} else {
			n += (t->starts[g >> 6] >> (g & 63)) & 1;
			g++;
		}
	}
	if ((t->starts[g0 >> 6] >> (g0 & 63)) & 1)
		return n; /* a block starts right at the page: nothing runs into it */
	if (pg >= c->start && pg < c->end)
		return n + 1;
	struct eternal_block b;
	if (eternal_block_find(r, (const void *)pg, &b) == 0 && (uintptr_t)b.start < pg) {
		c->start = (uintptr_t)b.start;
		c->end = (uintptr_t)b.start + b.size;
		n++;
	}
	return n;
}

ETERNAL_API int eternal_audit_scan(eternal_region *r, unsigned flags, struct eternal_dirty_page *out, size_t cap)
{
	uintptr_t lo[ETERNAL_NTIERS], hi[ETERNAL_NTIERS];
	size_t tpsz[ETERNAL_NTIERS];
	struct page_region vec[SCAN_VEC];
	int pm, rc;
	size_t n = 0;

	if (!r || (cap && !out) || (flags & ~ETERNAL_AUDIT_REPROTECT))
		return -EINVAL;
	if ((rc = _eternal_check(r)) < 0)
		return rc;
	if ((rc = _eternal_trap_audit_ctx(r, &pm, lo, hi, tpsz)) < 0)
		return rc;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	/* cap == 0: count (and with REPROTECT, re-protect) without listing */
	bool count_only = cap == 0;
	for (int k = 0; k < ETERNAL_NTIERS; k++) {
		struct span_cache c = { 0, 0 };
		uintptr_t start = lo[k], psz = tpsz[k]; /* a hugetlb tier reports huge pages */
		while (start < hi[k] && (count_only || n < cap)) {
			struct pm_scan_arg a = {
				.size = sizeof(a),
				.flags = (flags & ETERNAL_AUDIT_REPROTECT) ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC : 0,
				.start = start,
				.end = hi[k],
				.vec = (uintptr_t)vec,
				.vec_len = SCAN_VEC,
				/* counted in base pages by the kernel */
				.max_pages = count_only ? 0 : (cap - n) * (psz / (uintptr_t)sysconf(_SC_PAGESIZE)),
				.category_mask = PAGE_IS_WRITTEN,
				.return_mask = PAGE_IS_WRITTEN,
			};
			long got = ioctl(pm, PAGEMAP_SCAN, &a);
			if (got < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				return -errno;
			}
			for (long i = 0; i < got; i++) {
				for (uintptr_t p = vec[i].start & ~(psz - 1); p < vec[i].end; p += psz) {
					if (!count_only) {
						if (n >= cap)
							break;
						out[n].addr = p;
						out[n].tier = k;
						out[n].blocks = blocks_on_page(r, k, p, psz, &c);
					}
					n++;
				}
			}
			if (a.walk_end <= start)
				break;
			start = a.walk_end;
		}
	}
	return n > INT32_MAX ? INT32_MAX : (int)n;
}
