/* Description: blocks honour the default 16-byte alignment and every larger
 * power of two up to ETERNAL_MAX_ALIGN, in both tiers; bad ones are -EINVAL. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <stdint.h>

int main(void)
{
	eternal_region *r;
	void *p;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (int tier = 0; tier < ETERNAL_NTIERS; tier++) {
		for (size_t size = 1; size <= 70000; size = size * 3 + 1) {
			CHECK_RC(eternal_alloc(r, tier, size, 0, 0, &p), 0);
			CHECK(((uintptr_t)p & 15) == 0);
			for (size_t a = 16; a <= ETERNAL_MAX_ALIGN; a <<= 1) {
				CHECK_RC(eternal_alloc(r, tier, size, a, 0, &p), 0);
				CHECK(((uintptr_t)p & (a - 1)) == 0);
				CHECK(eternal_tier_of(r, p) == tier);
			}
			/* Smaller alignments are raised to the default. */
			CHECK_RC(eternal_alloc(r, tier, size, 1, 0, &p), 0);
			CHECK(((uintptr_t)p & 15) == 0);
		}
	}
	CHECK_RC(eternal_alloc(r, 0, 64, 24, 0, &p), -EINVAL);
	CHECK(p == NULL);
	CHECK_RC(eternal_alloc(r, 0, 64, ETERNAL_MAX_ALIGN << 1, 0, &p), -EINVAL);
	CHECK_RC(eternal_alloc(r, 0, 64, SIZE_MAX / 2 + 1, 0, &p), -EINVAL);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
