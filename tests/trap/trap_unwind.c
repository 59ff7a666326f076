/* Description: backtraces without frame pointers (this file is built with
 * -fomit-frame-pointer, like most distribution code): the signal engines copy
 * the stack top at the fault and the log side unwinds it with the binary's
 * CFI, so the callers show up; ETERNAL_TRAP_FP_ONLY turns the copy off. */
#define _GNU_SOURCE
#include "trap-test.h"

static int named(const struct eternal_trap_event *ev, const char *fn)
{
	char sym[256];
	for (uint32_t i = 0; i < ev->nframes; i++)
		if (eternal_symbolize(ev->frames[i], sym, sizeof(sym)) > 0 && !strncmp(sym, fn, strlen(fn)) &&
		    (sym[strlen(fn)] == '+' || sym[strlen(fn)] == '.'))
			return 1;
	return 0;
}

__attribute__((noinline, noclone)) static void inner(volatile char *p, int depth)
{
	char pad[64];
	memset(pad, depth, sizeof(pad));
	__asm__ volatile("" : : "r"(pad) : "memory");
	writer(p + (pad[3] & 1), 1);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline, noclone)) static void outer(volatile char *p)
{
	inner(p, 2);
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	struct eternal_trap_event ev[4];

	need_engine(e);
	for (int fp_only = 0; fp_only < 2; fp_only++) {
		struct fixture f;
		fixture_init(&f);
		CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, e, fp_only ? ETERNAL_TRAP_FP_ONLY : 0, 0, NULL), 0);
		outer(f.blk[2]);
		CHECK_RC(eternal_trap_read(f.r, ev, 4), 1);
		CHECK(pc_in_writer(ev[0].pc));
		if (!fp_only) {
			if (!named(&ev[0], "inner") || !named(&ev[0], "outer") || !named(&ev[0], "main")) {
				fprintf(stderr, "%u frames, callers missing\n", ev[0].nframes);
				return T_FAIL;
			}
		} else {
			/* the walk over frame pointers cannot get past the first frame here */
			CHECK(!named(&ev[0], "outer"));
		}
		CHECK_RC(eternal_region_close(f.r), 0);
	}
	return T_PASS;
}
