/* Description: as an unprivileged user (a child that setuid()s to nobody when
 * run as root) the automatic choice still yields a working engine, or seal
 * fails with a clear -EPERM/-EOPNOTSUPP and a logged reason; no engine
 * claims to work and then misses the write; PCs still symbolize. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <grp.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static char logged[1024];
static void on_log(enum eternal_log_level lvl, const char *msg, void *arg)
{
	(void)lvl;
	(void)arg;
	size_t n = strlen(logged);
	snprintf(logged + n, sizeof(logged) - n, "%s\n", msg);
}

static int try_engine(enum eternal_trap_engine e)
{
	struct fixture f;
	struct eternal_trap_event ev[4];
	int avail = eternal_trap_probe(e);

	logged[0] = 0;
	fixture_init(&f);
	int rc = fixture_seal(&f, ETERNAL_MODE_TRAP, e, 0, 0, NULL);
	if (rc == -EPERM || rc == -EOPNOTSUPP) {
		/* refused: must have been announced by the probe and logged */
		if (avail != 0 || !logged[0]) {
			fprintf(stderr, "%s refused (%d) but probe said %d, log '%s'\n",
				eternal_engine_name(e), rc, avail, logged);
			return 1;
		}
		fprintf(stderr, "uid %d: %s refused: %s", (int)geteuid(), eternal_engine_name(e), logged);
		return 0;
	}
	if (rc != 0 || (e != ETERNAL_ENGINE_AUTO && avail != 1))
		return 2;
	writer(f.blk[2] + 5, 1);
	if (eternal_trap_read(f.r, ev, 4) != 1 || ev[0].addr != (uintptr_t)(f.blk[2] + 5))
		return 3;
	/* the thread engine reads the PC from /proc/self/task/TID/syscall, which
	 * a process that dropped root is not allowed to read (not dumpable) */
	bool no_pc_ok = ev[0].engine == ETERNAL_ENGINE_THREAD && prctl(PR_GET_DUMPABLE) == 0 &&
			strstr(logged, "no PC");
	if (!pc_in_writer(ev[0].pc) && !no_pc_ok)
		return 4;
	char sym[128] = "";
	int srcs = ev[0].pc ? eternal_symbolize(ev[0].pc, sym, sizeof(sym)) : -EINVAL;
	/* nor the frame walk: the leaf writer's caller is found from the loader's list */
	if (ev[0].engine == ETERNAL_ENGINE_PRECISE &&
	    !(ev[0].nframes >= 1 && ev[0].frames[0] >= (uintptr_t)try_engine && ev[0].frames[0] < (uintptr_t)try_engine + 4096))
		return 6;
	/* symbolization must not depend on /proc/self/maps, unreadable here */
	if (ev[0].pc && (srcs <= 0 || strncmp(sym, "writer", 6) != 0))
		return 5;
	fprintf(stderr, "uid %d: %s -> %s works (pc %s, symbolize %d); %s", (int)geteuid(), eternal_engine_name(e),
		eternal_engine_name(get_stats(f.r).engine), sym, srcs, logged);
	eternal_region_close(f.r);
	return 0;
}

int main(void)
{
	eternal_set_log(on_log, NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0) {
			if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
				_exit(10);
		}
		if (geteuid() == 0)
			_exit(11);
		int rc = try_engine(ETERNAL_ENGINE_AUTO);
		if (!rc)
			rc = try_engine(ETERNAL_ENGINE_PRECISE);
		if (!rc)
			rc = try_engine(ETERNAL_ENGINE_THREAD);
		_exit(rc);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "unprivileged child status %#x\n", st);
		return T_FAIL;
	}
	return T_PASS;
}
