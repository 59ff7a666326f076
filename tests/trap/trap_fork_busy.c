/* Description: fork while traps are being handled (argv[1] engine): a thread
 * keeps writing fresh pages, with the log writer busy, while the main thread
 * forks; every child re-arms and catches its own writes, no one hangs, and
 * the parent loses no count. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>

#define NPG 1000
static eternal_region *r;
static char *base;
static atomic_int done, written;

static void *run(void *arg)
{
	(void)arg;
	for (int i = 0; i < NPG; i++) {
		writer(base + (size_t)i * 4096 + 1, 1);
		atomic_fetch_add(&written, 1);
	}
	atomic_store(&done, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	char dir[] = "/tmp/eternal-forkbusy-XXXXXX", cmd[128];
	void *p;
	pthread_t th;
	int forks = 0;

	need_engine(e);
	CHECK(mkdtemp(dir) != NULL);
	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, (NPG + 64) * 4096, 4096, 7, &p), 0);
	base = p;
	struct eternal_trap_opts o = { .sz = sizeof(o), .engine = e, .log_dir = dir, .ring_capacity = 2 * NPG };
#if defined(__SANITIZE_ADDRESS__)
	/* GCC 12's AddressSanitizer allocator is not fork-safe: a child forked
	 * while the log writer thread allocates (libdw) deadlocks in malloc.
	 * glibc's malloc is; the plain build covers the writer during fork. */
	o.log_dir = NULL;
#endif
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_TRAP, &o), 0);
	CHECK(pthread_create(&th, NULL, run, NULL) == 0);
	while (!atomic_load(&done) || forks < 5) {
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			struct eternal_trap_event ev[8];
			char *mine = base + (size_t)(NPG + 10 + forks % 50) * 4096;
			writer(mine, 2);
			writer(mine + 4096, 2);
			int n = eternal_trap_read(r, ev, 8);
			_exit(n == 2 && ev[0].addr == (uintptr_t)mine && ev[0].pid == getpid() ? 0 : 3);
		}
		int st;
		CHECK(waitpid(pid, &st, 0) == pid);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "child %d after %d writes: status %#x\n", forks, atomic_load(&written), st);
			return T_FAIL;
		}
		forks++;
	}
	pthread_join(th, NULL);
	struct eternal_stats st = get_stats(r);
	CHECK(st.trap_writes[0] == NPG);
	CHECK(st.trap_dropped == 0);
	fprintf(stderr, "%d forks during %d trapped writes\n", forks, NPG);
	CHECK_RC(eternal_region_close(r), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return T_PASS;
}
