/* Description: large blocks (above the size classes, up to 64 MiB) keep their
 * contents, do not overlap, resolve in the start map and free cleanly. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <stdint.h>

int main(void)
{
	static const size_t sizes[] = { 16385, 20000, 65536, 65537, 131072, 1 << 20, 3000017, 64 << 20 };
	void *p[sizeof(sizes) / sizeof(sizes[0])];
	struct eternal_block b;
	eternal_region *r;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *small;

		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, sizes[i], 0, (uint8_t)(i + 1), &p[i]), 0);
		t_pattern_fill(p[i], sizes[i], (unsigned)i);
		/* Interleave small allocations so spans and runs mix. */
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 32, 0, 0, &small), 0);
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *q = p[i];

		CHECK(t_pattern_check(p[i], sizes[i], (unsigned)i));
		for (size_t off = 0; off < sizes[i]; off += 4093) {
			CHECK_RC(eternal_block_find(r, q + off, &b), 0);
			CHECK(b.start == p[i]);
			CHECK(b.size >= sizes[i] && b.size < sizes[i] + 16);
			CHECK(b.tag == i + 1);
		}
		CHECK_RC(eternal_block_find(r, q + sizes[i] - 1, &b), 0);
		CHECK(b.start == p[i]);
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i += 2)
		CHECK_RC(eternal_free(r, p[i]), 0);
	for (size_t i = 1; i < sizeof(sizes) / sizeof(sizes[0]); i += 2)
		CHECK(t_pattern_check(p[i], sizes[i], (unsigned)i));
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
