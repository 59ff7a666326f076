/* Description: after a strict seal, a write into the sealed tier dies with
 * SIGSEGV/SEGV_ACCERR in the parent and in a child forked afterwards. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile void *target;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	/* 42: the expected fault, at the expected address. */
	_exit(si->si_code == SEGV_ACCERR && si->si_addr == target ? 42 : 43);
}

static int write_in_child(int fork_twice)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		struct sigaction sa;

		if (fork_twice) {
			/* A grandchild: forked from a process that itself
			 * inherited the sealed mapping. */
			pid_t g = fork();

			if (g > 0) {
				waitpid(g, &status, 0);
				_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 44);
			}
		}
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO;
		sigaction(SIGSEGV, &sa, NULL);
		*(volatile char *)target = 1;
		_exit(0); /* the write went through: failure */
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(void)
{
	eternal_region *r;
	char *p;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 4096, 0, 0, (void **)&p), 0);
	memset(p, 7, 4096);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	target = p + 100;
	/* "Parent": this process forks only to survive its own fault. */
	CHECK_RC(write_in_child(0), 42);
	CHECK_RC(write_in_child(1), 42);
	CHECK(p[100] == 7);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
