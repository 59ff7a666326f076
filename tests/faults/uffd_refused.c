/* Description: userfaultfd refused (seccomp: the syscall and
 * /dev/userfaultfd's USERFAULTFD_IOC_NEW answer EPERM). The probes say no,
 * sealing with an engine that needs it fails (-EOPNOTSUPP or -EPERM) and leaves the
 * region in warm-up, and trap mode with the automatic engine falls back to
 * mprotect, which still catches and logs the first write to each page. */
#include "fault.h"
#include "eternal.h"
#include "../common.h"

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

/* -EOPNOTSUPP is what eternal.h promises for a missing feature; -EPERM (the
 * kernel's own answer) says more and is as clear. */
static int refused(int rc)
{
	if (rc != -EOPNOTSUPP && rc != -EPERM)
		fprintf(stderr, "seal returned %d, expected -EOPNOTSUPP or -EPERM\n", rc);
	return rc == -EOPNOTSUPP || rc == -EPERM;
}

static void child(void)
{
	struct fault_rule rules[] = {
		{ SYS_userfaultfd, EPERM, FAULT_ANY },
		{ SYS_ioctl, EPERM, { 1, -1 }, { (uint32_t)USERFAULTFD_IOC_NEW, 0 } },
	};
	struct eternal_trap_opts to = { .sz = sizeof(to) };
	struct eternal_stats st = { .sz = sizeof(st) };
	struct eternal_trap_event ev[8];
	eternal_region *r;
	char *p;

	CHECK_RC(fault_install(rules, 2), 0);
	CHECK_RC(eternal_trap_probe(ETERNAL_ENGINE_PRECISE), 0);
	CHECK_RC(eternal_trap_probe(ETERNAL_ENGINE_THREAD), 0);
	CHECK_RC(eternal_trap_probe(ETERNAL_ENGINE_MPROTECT), 1);
	CHECK_RC(eternal_audit_probe(), 0);

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 3 * 4096, 4096, 5, (void **)&p), 0);
	memset(p, 'a', 3 * 4096);

	/* Engines that need userfaultfd: a clear error, nothing changed. */
	to.engine = ETERNAL_ENGINE_PRECISE;
	CHECK(refused(eternal_seal(r, ETERNAL_MODE_TRAP, &to)));
	to.engine = ETERNAL_ENGINE_THREAD;
	CHECK(refused(eternal_seal(r, ETERNAL_MODE_TRAP, &to)));
	CHECK(refused(eternal_seal(r, ETERNAL_MODE_AUDIT, NULL)));
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.state, ETERNAL_STATE_WARMUP);
	p[0] = 'b'; /* still writable, still allocating */
	{
		void *q;

		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 64, 0, 0, &q), 0);
	}

	/* The automatic engine falls back. */
	to.engine = ETERNAL_ENGINE_AUTO;
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_TRAP, &to), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.state, ETERNAL_STATE_SEALED);
	CHECK_RC(st.mode, ETERNAL_MODE_TRAP);
	CHECK_RC(st.engine, ETERNAL_ENGINE_MPROTECT);
	p[4096 + 10] = 'c';
	p[4096 + 11] = 'd'; /* same page: no second trap */
	CHECK(p[0] == 'b' && p[4096 + 10] == 'c' && p[4096 + 11] == 'd' && p[2 * 4096] == 'a');
	CHECK_RC(eternal_trap_read(r, ev, 8), 1);
	CHECK(ev[0].addr == (uint64_t)(uintptr_t)(p + 4096 + 10));
	CHECK_RC(ev[0].engine, ETERNAL_ENGINE_MPROTECT);
	CHECK_RC(ev[0].tag, 5);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.trap_writes[ETERNAL_TIER_SEALED], 1);
	CHECK_RC(eternal_region_close(r), 0);
	_exit(T_PASS);
}

int main(void)
{
	int status;
	pid_t pid;

	if (!fault_seccomp_available())
		t_skip("seccomp filters unavailable");
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		child();
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		fprintf(stderr, "child killed by signal %d\n", WTERMSIG(status));
	CHECK(WIFEXITED(status));
	return WEXITSTATUS(status);
}
