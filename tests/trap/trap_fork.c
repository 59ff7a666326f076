/* Description: after fork the child re-arms its own trap (argv[1] engine):
 * the parent and the child are both caught, each in its own ring, and the
 * child's write never reaches the parent. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <sys/wait.h>

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	struct fixture f;
	struct eternal_trap_event ev[8];

	need_engine(e);
	fixture_init(&f);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, e, engine_flags(argc, argv), 0, NULL), 0);
	writer(f.blk[1], 11);
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 1);
	CHECK(ev[0].block_start == (uintptr_t)f.blk[1]);

	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* nothing inherited from the parent's ring or counters */
		if (eternal_trap_read(f.r, ev, 8) != 0 || get_stats(f.r).trap_writes[0] != 0)
			_exit(2);
		writer(f.blk[2] + 10, 22); /* untouched page */
		writer(f.blk[1] + 20, 33); /* page the parent wrote before fork */
		int n = eternal_trap_read(f.r, ev, 8);
		if (n != 2)
			_exit(3);
		if (ev[0].addr != (uintptr_t)(f.blk[2] + 10) || ev[0].pid != getpid() || !pc_in_writer(ev[0].pc))
			_exit(4);
		if (ev[1].addr != (uintptr_t)(f.blk[1] + 20))
			_exit(5);
		/* and a grandchild too */
		pid_t g = fork();
		if (g == 0) {
			writer(f.blk[3], 44);
			_exit(eternal_trap_read(f.r, ev, 8) == 1 && ev[0].addr == (uintptr_t)f.blk[3] ? 0 : 6);
		}
		int gs;
		waitpid(g, &gs, 0);
		_exit(WIFEXITED(gs) ? WEXITSTATUS(gs) : 7);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "child status %#x\n", st);
		return T_FAIL;
	}
	/* the child's writes are its own */
	CHECK(f.blk[2][10] == 2);
	CHECK(f.blk[1][20] == 1);
	CHECK(f.blk[3][0] == 3);
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 0);
	/* the parent is still armed */
	writer(f.blk[4], 55);
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 1);
	CHECK(ev[0].addr == (uintptr_t)f.blk[4] && ev[0].pid == getpid());
	CHECK(get_stats(f.r).trap_writes[0] == 2);
	return T_PASS;
}
