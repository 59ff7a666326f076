/* Description: stats count bytes and blocks per tier and per tag, follow tag
 * changes and frees, report holes and fragmentation, state and mode. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>

int main(void)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	eternal_region *r;
	void *a, *b, *c, *d;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK(st.state == ETERNAL_STATE_WARMUP);
	CHECK(st.tier[0].reserved == 512ul << 20 && st.tier[1].reserved == 512ul << 20);
	CHECK(st.tier[0].used == 0 && st.tier[0].blocks == 0 && st.tier[0].committed == 0);

	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 100, 0, 5, &a), 0);   /* class 112 */
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 32, 0, 5, &b), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 40000, 0, 9, &c), 0); /* large */
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_COW, 64, 0, 1, &d), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK(st.tier[0].blocks == 3 && st.tier[0].large_blocks == 1);
	CHECK(st.tier[0].used == 112 + 32 + 40000);
	CHECK(st.tier[0].committed == 2u << 20);
	CHECK(st.tier[0].free == st.tier[0].committed - st.tier[0].used);
	CHECK(st.tag_blocks[0][5] == 2 && st.tag_bytes[0][5] == 144);
	CHECK(st.tag_blocks[0][9] == 1 && st.tag_bytes[0][9] == 40000);
	CHECK(st.tag_blocks[1][1] == 1 && st.tier[1].used == 64);

	CHECK_RC(eternal_block_set_tag(r, b, 7), 0);
	CHECK_RC(eternal_free(r, a), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK(st.tag_blocks[0][5] == 0 && st.tag_blocks[0][7] == 1 && st.tag_bytes[0][7] == 32);
	CHECK(st.tier[0].used == 32 + 40000);
	CHECK(st.tier[0].holes > 0);
	CHECK(st.tier[0].fragmentation > 0 && st.tier[0].fragmentation < 1);

	/* An old caller with a shorter struct gets the prefix it knows. */
	struct eternal_stats small = { .sz = offsetof(struct eternal_stats, tag_blocks) };
	CHECK_RC(eternal_stats_get(r, &small), 0);
	CHECK(small.tier[0].used == 32 + 40000);

	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK_RC(eternal_block_set_tag(r, b, 8), -EROFS);
	CHECK_RC(eternal_block_set_tag(r, d, 2), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK(st.state == ETERNAL_STATE_SEALED && st.mode == ETERNAL_MODE_STRICT);
	CHECK(st.tag_blocks[1][2] == 1 && st.tag_blocks[1][1] == 0);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
