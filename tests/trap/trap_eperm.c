/* Description: userfaultfd refused with EPERM (a seccomp filter, as container
 * runtimes install, in an unprivileged child): the probes say no, an explicit
 * uffd engine fails with -EPERM leaving the region warming up, and the
 * automatic choice falls back to mprotect, which still catches writes. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int deny_userfaultfd(void)
{
#if defined(__x86_64__)
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
#else
	return -1;
#endif
}

int main(void)
{
#if !defined(__x86_64__)
	t_skip("seccomp filter written for x86-64 only");
#endif
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct fixture f;
		struct eternal_trap_event ev[4];
		/* unprivileged, so /dev/userfaultfd (root's) is no way around it */
		if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0))
			_exit(10);
		if (deny_userfaultfd() < 0)
			_exit(11);
		if (syscall(SYS_userfaultfd, 0) >= 0 || errno != EPERM)
			_exit(12);
		if (eternal_trap_probe(ETERNAL_ENGINE_PRECISE) != 0 || eternal_trap_probe(ETERNAL_ENGINE_THREAD) != 0 ||
		    eternal_audit_probe() != 0)
			_exit(13);
		fixture_init(&f);
		if (fixture_seal(&f, ETERNAL_MODE_TRAP, ETERNAL_ENGINE_PRECISE, 0, 0, NULL) != -EPERM)
			_exit(14);
		if (fixture_seal(&f, ETERNAL_MODE_AUDIT, ETERNAL_ENGINE_AUTO, 0, 0, NULL) != -EPERM)
			_exit(15);
		if (get_stats(f.r).state != ETERNAL_STATE_WARMUP)
			_exit(16);
		if (fixture_seal(&f, ETERNAL_MODE_TRAP, ETERNAL_ENGINE_AUTO, 0, 0, NULL) != 0 ||
		    get_stats(f.r).engine != ETERNAL_ENGINE_MPROTECT)
			_exit(17);
		writer(f.blk[3] + 3, 1);
		if (eternal_trap_read(f.r, ev, 4) != 1 || ev[0].addr != (uintptr_t)(f.blk[3] + 3) || !pc_in_writer(ev[0].pc))
			_exit(18);
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "child status %#x\n", st);
		return T_FAIL;
	}
	return T_PASS;
}
