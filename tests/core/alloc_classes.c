/* Description: every small size maps to a size class at least as large,
 * blocks never overlap, come zeroed, and the start map reports the class. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <stdint.h>
#include <string.h>

int main(void)
{
	eternal_region *r;
	struct eternal_block b;
	static void *ptrs[16385];

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (size_t size = 1; size <= 16384; size++) {
		void *p;

		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, size, 0, 0, &p), 0);
		CHECK_RC(eternal_block_find(r, p, &b), 0);
		CHECK(b.start == p);
		CHECK(b.size >= size);
		/* Waste per class stays bounded: at most 25% above 1 KiB. */
		CHECK(size <= 1024 ? b.size - size < 16 : b.size <= size + size / 4 + 16);
		for (size_t i = 0; i < b.size; i++)
			CHECK(((unsigned char *)p)[i] == 0);
		memset(p, 0xAB, b.size);
		ptrs[size] = p;
	}
	/* Writing each block to its full class size disturbed no neighbour. */
	for (size_t size = 1; size <= 16384; size++) {
		CHECK_RC(eternal_block_find(r, ptrs[size], &b), 0);
		for (size_t i = 0; i < b.size; i++)
			CHECK(((unsigned char *)ptrs[size])[i] == 0xAB);
	}
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
