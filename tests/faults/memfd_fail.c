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

/* Address space of this process in kB: a leaked reservation is 1 GiB, while
 * the maps count moves with malloc (and with ASan's own allocator). */
static long vm_size_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "re");

	CHECK(f != NULL);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

#define LEAK_SLACK_KB (64L << 10) /* far below one tier's 512 MiB reserve */

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

/* Let exactly @spare more descriptors open: RLIMIT_NOFILE bounds fd
 * numbers, and new fds take the lowest free number, so the limit goes
 * @spare above the lowest free one (whatever the caller left open above it). */
static void limit_fds(int spare, struct rlimit *saved)
{
	struct rlimit rl;
	int lowest = dup(0);

	CHECK(lowest >= 0);
	close(lowest);
	CHECK(getrlimit(RLIMIT_NOFILE, saved) == 0);
	rl = *saved;
	rl.rlim_cur = (rlim_t)(lowest + spare);
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

static void nofile_case(int spare)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .name = NAME };
	struct rlimit saved;
	eternal_region *r = (eternal_region *)1;
	int fds = fault_count_fds();
	long vm = vm_size_kb();

	limit_fds(spare, &saved);
	CHECK_RC(eternal_region_create(&o, &r), -EMFILE);
	CHECK(r == (eternal_region *)1); /* *out untouched on failure */
	CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
	CHECK_RC(fault_count_fds(), fds);
	CHECK_RC(fault_count_maps(NAME), 0);
	CHECK(labs(vm_size_kb() - vm) < LEAK_SLACK_KB);
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
		int fds = fault_count_fds();
		long vm = vm_size_kb();
		char *heap;

		CHECK_RC(fault_install(&rule, 1), 0);
		for (int i = 0; i < 100; i++)
			CHECK_RC(eternal_region_create(&o, &r), -ENFILE);
		CHECK_RC(fault_count_fds(), fds);
		CHECK_RC(fault_count_maps(NAME), 0);
		CHECK(labs(vm_size_kb() - vm) < LEAK_SLACK_KB);
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
