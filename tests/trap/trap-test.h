/* trap-test.h - helpers shared by the trap tests: a region with tagged
 * blocks in the sealed tier, sealing in trap mode with a named engine. */
#ifndef ETERNAL_TRAP_TEST_H
#define ETERNAL_TRAP_TEST_H

#include "eternal.h"
#include "common.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define NBLK 64
#define BLK_SIZE 8192 /* large blocks: two pages each, so page == block is easy to see */

struct fixture {
	eternal_region *r;
	char *blk[NBLK];
	long page;
};

static inline enum eternal_trap_engine engine_arg(int argc, char **argv)
{
	const char *e = argc > 1 ? argv[1] : "auto";

	return (enum eternal_trap_engine)t_engine(!strcmp(e, "thread-busy") ? "thread" : e);
}

/* "thread-busy": the thread engine busy-polling instead of sleeping */
static inline unsigned engine_flags(int argc, char **argv)
{
	return argc > 1 && !strcmp(argv[1], "thread-busy") ? ETERNAL_TRAP_BUSY_POLL : 0;
}

/* Skip (kernel lacks it) when the engine's probe says no. */
static inline void need_engine(enum eternal_trap_engine e)
{
	int p = eternal_trap_probe(e);
	if (p == 0)
		t_skip("engine %s unavailable on this kernel", eternal_engine_name(e));
	CHECK(p == 1);
}

/* Region with NBLK tagged blocks in the sealed tier, each filled. */
static inline void fixture_init(struct fixture *f)
{
	f->page = sysconf(_SC_PAGESIZE);
	CHECK_RC(eternal_region_create(NULL, &f->r), 0);
	for (int i = 0; i < NBLK; i++) {
		void *p;
		CHECK_RC(eternal_alloc(f->r, ETERNAL_TIER_SEALED, BLK_SIZE, 4096, (uint8_t)(10 + i % 5), &p), 0);
		f->blk[i] = p;
		memset(p, i, BLK_SIZE);
	}
}

static inline int fixture_seal(struct fixture *f, enum eternal_mode mode, enum eternal_trap_engine e,
			       unsigned flags, size_t ring, const char *log_dir)
{
	struct eternal_trap_opts o = {
		.sz = sizeof(o), .engine = e, .flags = flags, .ring_capacity = ring, .log_dir = log_dir,
	};
	return eternal_seal(f->r, mode, &o);
}

/* Each writes one byte; noinline so the trapped PC lies inside it. */
__attribute__((noinline, unused)) static void writer(volatile char *p, char v)
{
	*p = v;
	__asm__ volatile("" ::: "memory");
}

/* Is @pc an instruction of writer()? Asked of the symbol table through
 * elfutils (the symbol's size bounds it, whatever the compiler's flags made
 * of the function); a fixed window only where symbolization is unavailable. */
static inline int pc_in_writer(uint64_t pc)
{
	char sym[256];

	if (pc < (uintptr_t)writer)
		return 0;
	/* The compiler may have cloned it: writer.constprop.0, writer.isra.0 */
	if (eternal_symbolize(pc, sym, sizeof(sym)) > 0)
		return !strncmp(sym, "writer", 6) && (sym[6] == 0 || strchr("+. ", sym[6]));
	return pc < (uintptr_t)writer + 64;
}

static inline struct eternal_stats get_stats(eternal_region *r)
{
	struct eternal_stats st;
	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	return st;
}

#endif
