/* Description: bad arguments get defined errors, never a crash: NULLs, zero
 * size, unknown tier/mode, foreign pointers, sealing twice, use after close. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int main(void)
{
	struct eternal_region_opts bad = { .sz = sizeof(bad), .grow_step = 1000 };
	struct eternal_stats st = { .sz = sizeof(st) };
	struct eternal_block b;
	eternal_region *r;
	uintptr_t lo, hi;
	void *p, *heap = malloc(16);
	int local;

	CHECK_RC(eternal_region_create(NULL, NULL), -EINVAL);
	CHECK_RC(eternal_region_create(&bad, &r), -EINVAL);
	bad.grow_step = 0;
	bad.sz = 3;
	CHECK_RC(eternal_region_create(&bad, &r), -EINVAL);
	bad.sz = sizeof(bad);
	bad.flags = 1u << 30;
	CHECK_RC(eternal_region_create(&bad, &r), -EINVAL);

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(NULL, 0, 16, 0, 0, &p), -EINVAL);
	CHECK_RC(eternal_alloc(r, 0, 16, 0, 0, NULL), -EINVAL);
	CHECK_RC(eternal_alloc(r, 0, 0, 0, 0, &p), -EINVAL);
	CHECK_RC(eternal_alloc(r, 2, 16, 0, 0, &p), -EINVAL);
	CHECK_RC(eternal_alloc(r, (enum eternal_tier)-1, 16, 0, 0, &p), -EINVAL);
	CHECK_RC(eternal_alloc(r, 0, SIZE_MAX, 0, 0, &p), -ENOMEM);
	CHECK_RC(eternal_free(r, heap), -EFAULT);
	CHECK_RC(eternal_free(r, &local), -EFAULT);
	CHECK_RC(eternal_free(r, NULL), -EFAULT);
	CHECK_RC(eternal_alloc(r, 0, 64, 0, 0, &p), 0);
	CHECK_RC(eternal_free(r, (char *)p + 16), -EINVAL);
	CHECK_RC(eternal_block_find(r, heap, &b), -EFAULT);
	CHECK_RC(eternal_block_find(r, p, NULL), -EINVAL);
	CHECK_RC(eternal_block_set_tag(r, (char *)p + 16, 3), -EINVAL);
	CHECK_RC(eternal_tier_bounds(r, 5, &lo, &hi), -EINVAL);
	CHECK_RC(eternal_tier_bounds(r, 0, NULL, &hi), -EINVAL);
	CHECK_RC(eternal_block_foreach(r, 0, NULL, NULL), -EINVAL);
	CHECK(eternal_tier_of(r, heap) == ETERNAL_TIER_NONE);
	CHECK(!eternal_contains(NULL, p));
	CHECK(eternal_tier_of(NULL, p) == ETERNAL_TIER_NONE);
	st.sz = 1;
	CHECK_RC(eternal_stats_get(r, &st), -EINVAL);
	st.sz = sizeof(st);
	CHECK_RC(eternal_stats_get(r, NULL), -EINVAL);
	CHECK_RC(eternal_seal(r, (enum eternal_mode)9, NULL), -EINVAL);

	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), -EALREADY);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_OFF, NULL), -EALREADY);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 16, 0, 0, &p), -EROFS);
	CHECK_RC(eternal_block_find(r, p, &b), -EFAULT); /* p was set to NULL */

	CHECK_RC(eternal_region_close(r), 0);
	/* Use after close: every call answers -EBADF. */
	CHECK_RC(eternal_region_close(r), -EBADF);
	CHECK_RC(eternal_alloc(r, 0, 16, 0, 0, &p), -EBADF);
	CHECK_RC(eternal_free(r, p), -EBADF);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), -EBADF);
	CHECK_RC(eternal_stats_get(r, &st), -EBADF);
	CHECK_RC(eternal_block_find(r, heap, &b), -EBADF);
	CHECK_RC(eternal_tier_fd(r, 0), -EBADF);
	CHECK(!eternal_contains(r, heap));
	CHECK_RC(eternal_region_close(NULL), 0);
	free(heap);
	return T_PASS;
}
