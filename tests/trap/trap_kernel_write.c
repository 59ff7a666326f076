/* Description: a write the kernel makes on the process's behalf (read(2) from
 * a pipe into the sealed tier): the thread engine logs it with kernel=1 and
 * the read succeeds; the signal engines (and a user-mode-only uffd, all an
 * unprivileged process gets) cannot run a handler for it, so the syscall
 * fails with EFAULT and nothing is corrupted. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <fcntl.h>
#include <stdbool.h>

static char logged[1024];
static void on_log(enum eternal_log_level lvl, const char *msg, void *arg)
{
	(void)lvl;
	(void)arg;
	size_t n = strlen(logged);
	snprintf(logged + n, sizeof(logged) - n, "%s\n", msg);
}

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	struct fixture f;
	struct eternal_trap_event ev[8];
	int p[2];

	need_engine(e);
	eternal_set_log(on_log, NULL);
	fixture_init(&f);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, e, 0, 0, NULL), 0);
	CHECK(pipe(p) == 0);
	CHECK(write(p[1], "hello", 5) == 5);
	ssize_t n = read(p[0], f.blk[7] + 64, 5);
	/* unprivileged, the uffd is user-mode-only: kernel writes get EFAULT
	 * there too, and the library says so when it arms */
	bool user_only = strstr(logged, "user-mode-only") != NULL;
	if (get_stats(f.r).engine == ETERNAL_ENGINE_THREAD && !user_only) {
		CHECK(n == 5);
		CHECK(memcmp(f.blk[7] + 64, "hello", 5) == 0);
		CHECK_RC(eternal_trap_read(f.r, ev, 8), 1);
		if (!ev[0].kernel) {
			/* a user-mode-only uffd (unprivileged) cannot see kernel writes */
			fprintf(stderr, "kernel flag not set\n");
			return T_FAIL;
		}
		CHECK(ev[0].addr == (uintptr_t)(f.blk[7] + 64));
		CHECK(ev[0].block_start == (uintptr_t)f.blk[7]);
	} else {
		CHECK(n == -1 && errno == EFAULT);
		CHECK(f.blk[7][64] == 7);
		CHECK_RC(eternal_trap_read(f.r, ev, 8), 0);
		/* the same data through a user store is caught as usual */
		writer(f.blk[7] + 64, 'h');
		CHECK_RC(eternal_trap_read(f.r, ev, 8), 1);
		CHECK(ev[0].kernel == 0);
	}
	return T_PASS;
}
