/* Description: with ETERNAL_TRAP_COW_TIER (argv[1] engine) first writes to
 * cow-tier pages are trapped too, tagged with the cow tier and its block;
 * without the flag the cow tier is left alone. */
#define _GNU_SOURCE
#include "trap-test.h"

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	struct eternal_trap_event ev[8];
	void *c[4];
	uintptr_t lo, hi;

	need_engine(e);
	for (int with = 0; with < 2; with++) {
		struct fixture f;
		fixture_init(&f);
		for (int i = 0; i < 4; i++) {
			CHECK_RC(eternal_alloc(f.r, ETERNAL_TIER_COW, 4096, 4096, (uint8_t)(40 + i), &c[i]), 0);
			memset(c[i], 0x5a, 4096);
		}
		CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, e, with ? ETERNAL_TRAP_COW_TIER : 0, 0, NULL), 0);
		writer((char *)c[2] + 24, 1);
		writer(f.blk[0], 1);
		int n = eternal_trap_read(f.r, ev, 8);
		CHECK(((char *)c[2])[24] == 1);
		if (!with) {
			CHECK_RC(n, 1);
			CHECK(ev[0].tier == ETERNAL_TIER_SEALED);
			CHECK(get_stats(f.r).trap_writes[ETERNAL_TIER_COW] == 0);
		} else {
			CHECK_RC(n, 2);
			CHECK(ev[0].tier == ETERNAL_TIER_COW);
			CHECK_RC(eternal_tier_bounds(f.r, ETERNAL_TIER_COW, &lo, &hi), 0);
			CHECK(ev[0].addr == (uintptr_t)c[2] + 24 && ev[0].offset == (uintptr_t)c[2] + 24 - lo);
			CHECK(ev[0].block_start == (uintptr_t)c[2] && ev[0].block_offset == 24 && ev[0].tag == 42);
			CHECK(pc_in_writer(ev[0].pc));
			CHECK(ev[1].tier == ETERNAL_TIER_SEALED);
			struct eternal_stats st = get_stats(f.r);
			CHECK(st.trap_writes[ETERNAL_TIER_COW] == 1 && st.trap_writes[ETERNAL_TIER_SEALED] == 1);
		}
		CHECK_RC(eternal_region_close(f.r), 0);
	}
	return T_PASS;
}
