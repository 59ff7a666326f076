/* Description: before sealing, freed small slots and large blocks are reused
 * (and handed out zeroed), so warm-up temporaries do not grow the region. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <string.h>

int main(void)
{
	eternal_region *r;
	struct eternal_stats st = { .sz = sizeof(st) };
	void *a, *b, *c;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (int tier = 0; tier < ETERNAL_NTIERS; tier++) {
		CHECK_RC(eternal_alloc(r, tier, 48, 0, 0, &a), 0);
		memset(a, 0x5A, 48);
		CHECK_RC(eternal_free(r, a), 0);
		CHECK_RC(eternal_alloc(r, tier, 40, 0, 0, &b), 0);
		CHECK(a == b);
		for (int i = 0; i < 48; i++)
			CHECK(((unsigned char *)b)[i] == 0);
		/* A double free is refused, not corrupting the free list. */
		CHECK_RC(eternal_free(r, b), 0);
		CHECK_RC(eternal_free(r, b), -EINVAL);

		/* Large: free a block in the middle, the next one of the
		 * same size lands in its hole. */
		CHECK_RC(eternal_alloc(r, tier, 100000, 0, 0, &a), 0);
		CHECK_RC(eternal_alloc(r, tier, 100000, 0, 0, &b), 0);
		CHECK_RC(eternal_alloc(r, tier, 100000, 0, 0, &c), 0);
		memset(b, 0x77, 100000);
		CHECK_RC(eternal_free(r, b), 0);
		CHECK_RC(eternal_alloc(r, tier, 90000, 0, 0, &a), 0);
		CHECK(a == b);
		for (int i = 0; i < 90000; i++)
			CHECK(((unsigned char *)a)[i] == 0);
		/* Churn does not grow the tier: once every class has its
		 * span, repeating the same alloc/free pattern reuses it all. */
		uint64_t used[2], committed[2];
		for (int pass = 0; pass < 2; pass++) {
			for (int i = 0; i < 100000; i++) {
				CHECK_RC(eternal_alloc(r, tier, (size_t)(i % 30000) + 1, 0, 0, &a), 0);
				CHECK_RC(eternal_free(r, a), 0);
			}
			CHECK_RC(eternal_stats_get(r, &st), 0);
			used[pass] = st.tier[tier].used;
			committed[pass] = st.tier[tier].committed;
		}
		CHECK(used[1] == used[0] && committed[1] == committed[0]);
		CHECK(st.tier[tier].large_blocks == 3); /* the three 100 kB-ish blocks above */
	}
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
