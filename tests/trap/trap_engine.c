/* Description: each engine (argv[1]) traps a deliberate write into the sealed
 * tier with the right address, block, offset, tag, tid and a PC inside the
 * writing function; reading every page first traps nothing. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <sys/syscall.h>

static volatile int sink;

__attribute__((noinline)) static void caller(volatile char *p)
{
	writer(p, 42);
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	struct fixture f;
	struct eternal_trap_event ev[8];
	char sym[256];

	need_engine(e);
	fixture_init(&f);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, e, engine_flags(argc, argv), 0, NULL), 0);
	struct eternal_stats st = get_stats(f.r);
	CHECK(st.mode == ETERNAL_MODE_TRAP);
	CHECK(e == ETERNAL_ENGINE_AUTO ? st.engine != ETERNAL_ENGINE_AUTO : st.engine == e);

	/* reads never trap */
	for (int i = 0; i < NBLK; i++)
		for (int k = 0; k < BLK_SIZE; k += 512)
			sink += f.blk[i][k];
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 0);
	CHECK(get_stats(f.r).trap_writes[ETERNAL_TIER_SEALED] == 0);

	/* one write into block 5, 100 bytes into its second page */
	volatile char *target = f.blk[5] + 4096 + 100;
	caller(target);
	CHECK(*target == 42);
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 1);
	CHECK(ev[0].addr == (uintptr_t)target);
	CHECK(ev[0].tier == ETERNAL_TIER_SEALED);
	uintptr_t lo, hi;
	CHECK_RC(eternal_tier_bounds(f.r, ETERNAL_TIER_SEALED, &lo, &hi), 0);
	CHECK(ev[0].offset == (uintptr_t)target - lo);
	CHECK(ev[0].block_start == (uintptr_t)f.blk[5]);
	CHECK(ev[0].block_size >= BLK_SIZE);
	CHECK(ev[0].block_offset == 4096 + 100);
	CHECK(ev[0].tag == 10 + 5 % 5);
	CHECK(ev[0].pid == getpid());
	CHECK(ev[0].tid == (int32_t)syscall(SYS_gettid));
	CHECK(ev[0].kernel == 0);
	CHECK(ev[0].engine == (uint8_t)get_stats(f.r).engine);
	CHECK(ev[0].time_ns > 0);
	if (!pc_in_writer(ev[0].pc)) {
		fprintf(stderr, "pc %#lx not in writer %p\n", (unsigned long)ev[0].pc, (void *)writer);
		return T_FAIL;
	}
	/* the precise and mprotect engines walk frames: caller() must show up */
	if (ev[0].engine != ETERNAL_ENGINE_THREAD) {
		int found = 0;
		for (uint32_t i = 0; i < ev[0].nframes; i++)
			found |= ev[0].frames[i] >= (uintptr_t)caller && ev[0].frames[i] < (uintptr_t)caller + 64;
		CHECK(found);
	}
	/* symbolized outside the handler */
	CHECK(eternal_symbolize(ev[0].pc, sym, sizeof(sym)) > 0);
	CHECK(strncmp(sym, "writer+", 7) == 0);

	/* the same page again: not a first write */
	writer(target + 1, 7);
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 0);
	/* the other page of the block is a new first write */
	writer(f.blk[5], 9);
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 1);
	CHECK(ev[0].block_offset == 0);
	CHECK(get_stats(f.r).trap_writes[ETERNAL_TIER_SEALED] == 2);
	CHECK(get_stats(f.r).trap_dropped == 0);
	CHECK_RC(eternal_region_close(f.r), 0);
	return T_PASS;
}
