/* fault.h - fault injection without LD_PRELOAD: a seccomp filter that makes
 * chosen system calls (optionally only with chosen arguments) fail with an errno. */
#ifndef ETERNAL_FAULT_H
#define ETERNAL_FAULT_H

#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One rule: syscall @nr fails with @err when every argument condition holds
 * (arg index -1: unused). Arguments are compared on their low 32 bits, which
 * is what the flags and commands we match fit in. */
struct fault_rule {
	int nr;
	int err;
	int arg[2];
	uint32_t val[2];
};

#define FAULT_ANY { -1, -1 }, { 0, 0 }

#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))

/* Install the filter in the calling thread (and threads it creates later).
 * Irreversible: call it in a child process. Returns 0 or -errno. */
static inline int fault_install(const struct fault_rule *rules, int n)
{
	struct sock_filter f[8 + 8 * 8];
	struct sock_fprog prog;
	int k = 0;

	if (n > 8)
		return -EINVAL;
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	for (int i = 0; i < n; i++) {
		const struct fault_rule *r = &rules[i];
		int nconds = (r->arg[0] >= 0) + (r->arg[1] >= 0);
		/* Block layout: ld nr; jeq nr; [ld arg; jeq val]...; ret errno. A
		 * miss jumps past the block's remaining instructions. */
		int len = 2 + 2 * nconds + 1;

		f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
		f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)r->nr, 0,
						      (uint8_t)(len - 2));
		for (int c = 0, done = 0; c < 2; c++) {
			if (r->arg[c] < 0)
				continue;
			done++;
			f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)ARG_LO(r->arg[c]));
			f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, r->val[c], 0,
							      (uint8_t)(len - 2 - 2 * done));
		}
		f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)r->err & SECCOMP_RET_DATA));
	}
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	prog.len = (unsigned short)k;
	prog.filter = f;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		return -errno;
	return 0;
}

/* Is seccomp filtering available at all? (kernel feature) */
static inline int fault_seccomp_available(void)
{
	return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
}

/* Count open fds and the maps lines naming @name, to show nothing leaked. */
static inline int fault_count_fds(void)
{
	char path[64];
	int n = 0;

	for (int fd = 0; fd < 4096; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (access(path, F_OK) == 0)
			n++;
	}
	return n;
}

static inline int fault_count_maps(const char *name)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/self/maps", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!name || strstr(line, name))
			n++;
	fclose(f);
	return n;
}

#endif
