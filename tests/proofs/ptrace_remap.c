/* Description: what a process allowed to ptrace a worker can still do to a
 * strict sealed tier (documented in README.md). It cannot write the shared
 * pages (POKEDATA -> EIO), but it can make the worker itself call
 * mmap(MAP_PRIVATE|MAP_FIXED) over the tier (syscall injection) and then poke
 * the worker's now-private copy. Checked: the injection works for root always
 * and for the same user only while the worker is dumpable; the memfd, the
 * parent and a sibling worker keep the original bytes in every case.
 * argv[1]: "root" (attacker stays root) or "nobody" (everyone is uid 65534). */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEN (2 * 4096)
#define POKE 0x4b4f4f50454b4f50l /* "POKEPOOK" */

static unsigned char orig(size_t i)
{
	return (unsigned char)(i * 13 + 1);
}

static pid_t spawn_worker(int dumpable, int ready)
{
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_DUMPABLE, dumpable);
		CHECK(write(ready, "r", 1) == 1);
		for (;;)
			pause();
	}
	return pid;
}

/* Peek 8 bytes of @pid at @addr through /proc/PID/mem (root, or same user). */
static long peek(pid_t pid, uintptr_t addr)
{
	char path[64];
	long v = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(pread(fd, &v, sizeof(v), (off_t)addr) == sizeof(v));
	close(fd);
	return v;
}

/* Inject mmap(addr, LEN, RW, MAP_PRIVATE|MAP_FIXED, fd, 0) into a worker
 * stopped in pause(), then POKEDATA. Returns 0, or -errno of the first
 * refused step. */
static int inject(pid_t pid, uintptr_t addr, int fd)
{
	struct user_regs_struct saved, regs;
	int status;
	long rc;

	if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0)
		return -errno;
	CHECK(ptrace(PTRACE_INTERRUPT, pid, 0, 0) == 0);
	CHECK(waitpid(pid, &status, __WALL) == pid);
	CHECK(ptrace(PTRACE_GETREGS, pid, 0, &saved) == 0);
	/* Before injecting: the write alone is refused. */
	errno = 0;
	rc = ptrace(PTRACE_POKEDATA, pid, (void *)addr, (void *)POKE);
	CHECK(rc < 0 && errno == EIO);
	regs = saved;
	regs.rip = saved.rip - 2; /* the `syscall` instruction pause() stopped after */
	regs.orig_rax = (unsigned long long)-1;
	regs.rax = SYS_mmap;
	regs.rdi = addr;
	regs.rsi = LEN;
	regs.rdx = PROT_READ | PROT_WRITE;
	regs.r10 = MAP_PRIVATE | MAP_FIXED;
	regs.r8 = (unsigned long long)fd;
	regs.r9 = 0;
	CHECK(peek(pid, saved.rip - 2) != 0);
	CHECK(ptrace(PTRACE_SETREGS, pid, 0, &regs) == 0);
	CHECK(ptrace(PTRACE_SINGLESTEP, pid, 0, 0) == 0);
	CHECK(waitpid(pid, &status, __WALL) == pid);
	CHECK(ptrace(PTRACE_GETREGS, pid, 0, &regs) == 0);
	fprintf(stderr, "injected mmap returned %#llx (tier at %#lx)\n", regs.rax, (unsigned long)addr);
	CHECK(regs.rax == addr);
	rc = ptrace(PTRACE_POKEDATA, pid, (void *)addr, (void *)POKE);
	fprintf(stderr, "POKEDATA after the remap: %s\n", rc == 0 ? "written" : strerror(errno));
	CHECK(rc == 0);
	saved.orig_rax = (unsigned long long)-1;
	saved.rax = (unsigned long long)-EINTR;
	CHECK(ptrace(PTRACE_SETREGS, pid, 0, &saved) == 0);
	CHECK(ptrace(PTRACE_DETACH, pid, 0, 0) == 0);
	return 0;
}

int main(int argc, char **argv)
{
	int as_nobody = argc > 1 && !strcmp(argv[1], "nobody");
	eternal_region *r;
	unsigned char *p, buf[LEN];
	uintptr_t lo, hi;
	int fd, pp[2];
	char c;

	if (getuid() != 0)
		t_skip("needs root (to compare root with nobody)");
	if (as_nobody) {
		CHECK(setgroups(0, NULL) == 0 && setgid(65534) == 0 && setuid(65534) == 0);
		CHECK(prctl(PR_SET_DUMPABLE, 1) == 0);
	}
	alarm(60);
	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, LEN, 4096, 1, (void **)&p), 0);
	for (size_t i = 0; i < LEN; i++)
		p[i] = orig(i);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	fd = eternal_tier_fd(r, ETERNAL_TIER_SEALED);
	CHECK(pipe(pp) == 0);

	for (int dumpable = 1; dumpable >= 0; dumpable--) {
		pid_t victim = spawn_worker(dumpable, pp[1]), sibling = spawn_worker(dumpable, pp[1]);
		int rc, status;

		CHECK(read(pp[0], &c, 1) == 1 && read(pp[0], &c, 1) == 1);
		rc = inject(victim, (uintptr_t)p, fd);
		fprintf(stderr, "%s attacker, %sdumpable worker: injection %s\n", as_nobody ? "same-user (nobody)" : "root",
			dumpable ? "" : "non-", rc == 0 ? "WORKED" : strerror(-rc));
		if (as_nobody && !dumpable) {
			CHECK_RC(rc, -EPERM); /* PR_SET_DUMPABLE 0 keeps the same user out */
		} else {
			CHECK_RC(rc, 0);
			CHECK(peek(victim, (uintptr_t)p) == POKE); /* its own private copy changed */
		}
		/* Nobody else's bytes changed: the sibling, the parent, the memfd. */
		if (!as_nobody || dumpable)
			CHECK(peek(sibling, (uintptr_t)p) != POKE);
		for (size_t i = 0; i < LEN; i++)
			CHECK(p[i] == orig(i));
		CHECK_RC(eternal_tier_bounds(r, ETERNAL_TIER_SEALED, &lo, &hi), 0);
		CHECK(pread(fd, buf, LEN, (off_t)((uintptr_t)p - lo)) == LEN);
		for (size_t i = 0; i < LEN; i++)
			CHECK(buf[i] == orig(i));
		kill(victim, SIGKILL);
		kill(sibling, SIGKILL);
		waitpid(victim, &status, 0);
		waitpid(sibling, &status, 0);
	}
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
