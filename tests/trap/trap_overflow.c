/* Description: a full ring drops events and counts them, never blocks or
 * crashes; every write still proceeds (argv[1] engine). */
#define _GNU_SOURCE
#include "trap-test.h"

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	struct fixture f;
	struct eternal_trap_event ev[64];

	need_engine(e);
	fixture_init(&f);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, e, 0, 8, NULL), 0);
	for (int i = 0; i < 50; i++) /* 100 distinct pages */
		for (int k = 0; k < 2; k++)
			writer(f.blk[i] + 4096 * k + 1, (char)i);
	for (int i = 0; i < 50; i++)
		CHECK(f.blk[i][1] == (char)i && f.blk[i][4097] == (char)i);
	struct eternal_stats st = get_stats(f.r);
	CHECK(st.trap_writes[0] == 100);
	CHECK(st.trap_dropped == 92);
	CHECK_RC(eternal_trap_read(f.r, ev, 64), 8);
	/* the ring keeps the oldest; sequence numbers are per process */
	for (int i = 0; i < 8; i++)
		CHECK(ev[i].seq == (uint64_t)i && ev[i].block_start == (uintptr_t)f.blk[i / 2]);
	/* drained: room again */
	writer(f.blk[60], 1);
	CHECK_RC(eternal_trap_read(f.r, ev, 64), 1);
	CHECK(ev[0].seq == 100);
	return T_PASS;
}
