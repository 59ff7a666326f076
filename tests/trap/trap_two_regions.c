/* Description: two regions trapped at once with different engines: each
 * write lands in its own region's ring, and closing one leaves the other
 * armed (the signal handlers stay shared and find the right region). */
#define _GNU_SOURCE
#include "trap-test.h"

int main(void)
{
	struct fixture a, b;
	struct eternal_trap_event ev[4];
	enum eternal_trap_engine ea = eternal_trap_probe(ETERNAL_ENGINE_PRECISE) == 1 ? ETERNAL_ENGINE_PRECISE
										 : ETERNAL_ENGINE_MPROTECT;

	fixture_init(&a);
	fixture_init(&b);
	CHECK_RC(fixture_seal(&a, ETERNAL_MODE_TRAP, ea, 0, 0, NULL), 0);
	CHECK_RC(fixture_seal(&b, ETERNAL_MODE_TRAP, ETERNAL_ENGINE_MPROTECT, 0, 0, NULL), 0);
	writer(a.blk[1], 1);
	writer(b.blk[2], 1);
	writer(b.blk[3], 1);
	CHECK_RC(eternal_trap_read(a.r, ev, 4), 1);
	CHECK(ev[0].block_start == (uintptr_t)a.blk[1] && ev[0].engine == ea);
	CHECK_RC(eternal_trap_read(b.r, ev, 4), 2);
	CHECK(ev[0].block_start == (uintptr_t)b.blk[2] && ev[1].block_start == (uintptr_t)b.blk[3]);
	CHECK(ev[0].engine == ETERNAL_ENGINE_MPROTECT);
	CHECK_RC(eternal_region_close(a.r), 0);
	writer(b.blk[4], 1);
	CHECK_RC(eternal_trap_read(b.r, ev, 4), 1);
	CHECK(ev[0].block_start == (uintptr_t)b.blk[4]);
	CHECK_RC(eternal_region_close(b.r), 0);
	return T_PASS;
}
