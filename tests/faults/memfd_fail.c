/* Description: memfd_create failing leaves no trace: with RLIMIT_NOFILE
 * exhausted (the sealed tier's memfd, then only the cow tier's marker memfd
 * fails) and with memfd_create refused by a seccomp filter, eternal_region_create
 * returns the errno, leaks no fd and no mapping, and works once the cause is gone. */
#include "fault.h"
#include "eternal.h"
#include "../common.h"

#include <sys/resource.h>
#include <sys/wait.h>

#define NAME "faultmemfd"

static void works(void)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .name = NAME };
	eternal_region *r;
	void *p;

	CHECK_RC(eternal_region_create(&o, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 100, 0, 1, &p), 0);
	memset(p, 7, 100);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_COW, 100, 0, 1, &p), 0);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK_RC(eternal_region_close(r), 0);
}

/* Leave exactly @spare free descriptors below the soft limit. */
static void limit_fds(int spare, struct rlimit *saved)
{
	struct rlimit rl;
	int used = fault_count_fds();

	CHECK(getrlimit(RLIMIT_NOFILE, saved) == 0);
	rl = *saved;
	/* fds are numbered from 0 and ours are dense (a fresh test process),
	 * so the lowest free numbers are used..; the limit is the count. */
	rl.rlim_cur = (rlim_t)(used + spare);
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

static void nofile_case(int spare)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .name = NAME };
	struct rlimit saved;
	eternal_region *r = (eternal_region *)1;
	int fds = fault_count_fds(), maps = fault_count_maps(NULL);

	limit_fds(spare, &saved);
	CHECK_RC(eternal_region_create(&o, &r), -EMFILE);
	CHECK(r == (eternal_region *)1); /* *out untouched on failure */
	CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
	CHECK_RC(fault_count_fds(), fds);
	CHECK_RC(fault_count_maps(NAME), 0);
	CHECK_RC(fault_count_maps(NULL), maps);
	works();
}

int main(void)
{
	int status;
	pid_t pid;

	/* Warm up libc and the library's one-time state, so the counts
	 * before and after a failure compare like with like. */
	works();
	nofile_case(0); /* the sealed tier's memfd fails */
	nofile_case(1); /* the sealed memfd opens, the cow marker memfd fails */

	if (!fault_seccomp_available())
		t_skip("seccomp filters unavailable");
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct fault_rule rule = { SYS_memfd_create, ENFILE, FAULT_ANY };
		struct eternal_region_opts o = { .sz = sizeof(o), .name = NAME };
		eternal_region *r;
		int fds = fault_count_fds(), maps = fault_count_maps(NULL);
		char *heap;

		CHECK_RC(fault_install(&rule, 1), 0);
		for (int i = 0; i < 100; i++)
			CHECK_RC(eternal_region_create(&o, &r), -ENFILE);
		CHECK_RC(fault_count_fds(), fds);
		CHECK_RC(fault_count_maps(NULL), maps);
		/* The process carries on with its ordinary heap. */
		heap = malloc(1 << 20);
		CHECK(heap);
		memset(heap, 1, 1 << 20);
		free(heap);
		_exit(T_PASS);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	CHECK_RC(WEXITSTATUS(status), T_PASS);
	return T_PASS;
}
