/* Description: with ETERNAL_TRAP_NO_REARM (argv[1] engine) a child is left
 * untrapped on purpose: its writes proceed without events or faults, and the
 * parent, still armed, sees none of them. */
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
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, e, ETERNAL_TRAP_NO_REARM, 0, NULL), 0);
	writer(f.blk[1], 1);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		writer(f.blk[2], 9);
		writer(f.blk[1] + 1, 9);
		_exit(f.blk[2][0] == 9 && eternal_trap_read(f.r, ev, 8) == 0 ? 0 : 3);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(f.blk[2][0] == 2);
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 1);
	writer(f.blk[2], 5);
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 1);
	CHECK(ev[0].addr == (uintptr_t)f.blk[2]);
	return T_PASS;
}
