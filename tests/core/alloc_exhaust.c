/* Description: running out of a tier's reserved range is -ENOMEM, counted in
 * stats, and survivable: the other tier and freed space keep working. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>

int main(void)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = 4 << 20, .cow_reserve = 4 << 20 };
	struct eternal_stats st = { .sz = sizeof(st) };
	eternal_region *r;
	void *p, *last = NULL;
	int rc, n = 0;

	CHECK_RC(eternal_region_create(&o, &r), 0);
	while ((rc = eternal_alloc(r, ETERNAL_TIER_SEALED, 1000, 0, 0, &p)) == 0) {
		last = p;
		n++;
	}
	CHECK_RC(rc, -ENOMEM);
	CHECK(p == NULL);
	CHECK(n > 3000); /* 4 MiB of 1 KiB-ish slots, minus span tails */
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 1 << 20, 0, 0, &p), -ENOMEM);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK(st.tier[0].alloc_failures == 2);
	CHECK(st.tier[0].committed == 4 << 20);
	/* The cow tier is independent. */
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_COW, 1000, 0, 0, &p), 0);
	/* Freeing makes room again. */
	CHECK_RC(eternal_free(r, last), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 1000, 0, 0, &p), 0);
	CHECK(p == last);
	/* A request beyond any reserve fails cleanly too. */
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_COW, (size_t)1 << 39, 0, 0, &p), -ENOMEM);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
