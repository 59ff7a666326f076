/* Description: immutability of the sealed tier in strict mode. From the
 * parent, from a forked worker and from an unrelated process (exec'd apart,
 * given the pids, the address and the memfd over SCM_RIGHTS), every way to
 * write must fail: /proc/PID/mem, process_vm_writev, ptrace POKEDATA, a new
 * writable mapping of the passed memfd (and write/ftruncate/fallocate on it),
 * mprotect back to writable. Afterwards every copy reads the original bytes.
 * argv[1] "nobody": drop to uid/gid 65534 first (all three roles). Each
 * attempt prints a line "<role>: <attack> -> <errno>" to stderr. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEN (3 * 4096)

extern char **environ;
static int failures;
static const char *role = "parent";

static unsigned char expect_byte(size_t i)
{
	return (unsigned char)(i * 7 + 3);
}

/* Run an attempt, then read errno (not in the same argument list: the
 * order in which arguments are evaluated is unspecified). */
#define TRY(what, succeeded)                       \
	do {                                       \
		int _ok = (succeeded), _e = errno; \
		refused(what, _ok, _e);            \
	} while (0)

/* Report one attempt: it must have failed. */
static void refused(const char *what, int ok, int err)
{
	fprintf(stderr, "%s: %-44s -> %s\n", role, what, ok ? "SUCCEEDED" : strerrorname_np(err));
	if (ok)
		failures++;
}

static void attack_proc_mem(pid_t pid, uintptr_t addr)
{
	char path[64], what[96], buf[8] = "PWNED!!";
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	snprintf(what, sizeof(what), "pwrite /proc/%s/mem", pid == getpid() ? "self" : "<other>");
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		TRY(what, 0);
		return;
	}
	n = pwrite(fd, buf, sizeof(buf), (off_t)addr);
	TRY(what, n > 0);
	close(fd);
}

static void attack_vm_writev(pid_t pid, uintptr_t addr)
{
	char buf[8] = "PWNED!!", what[64];
	struct iovec l = { buf, sizeof(buf) }, r = { (void *)addr, sizeof(buf) };
	ssize_t n = process_vm_writev(pid, &l, 1, &r, 1, 0);

	snprintf(what, sizeof(what), "process_vm_writev %s", pid == getpid() ? "self" : "<other>");
	TRY(what, n > 0);
}

/* POKEDATA goes through FOLL_FORCE, which writes through read-only
 * private mappings; the sealed tier is shared and cannot be made writable. */
static void attack_ptrace(pid_t pid, uintptr_t addr)
{
	int status;
	long rc;

	if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0) {
		TRY("ptrace SEIZE (to POKEDATA)", 0);
		return;
	}
	CHECK(ptrace(PTRACE_INTERRUPT, pid, 0, 0) == 0);
	CHECK(waitpid(pid, &status, __WALL) == pid);
	errno = 0;
	rc = ptrace(PTRACE_POKEDATA, pid, (void *)addr, (void *)0x4141414141414141l);
	TRY("ptrace POKEDATA", rc == 0);
	CHECK(ptrace(PTRACE_DETACH, pid, 0, 0) == 0);
}

/* The memfd as someone else receives it. */
static void attack_fd(int fd, uintptr_t own_view)
{
	char buf[8] = "PWNED!!", path[64], what[64];
	void *m;
	int fd2;

	m = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TRY("mmap(PROT_WRITE, MAP_SHARED) of the memfd", m != MAP_FAILED);
	TRY("pwrite on the memfd", pwrite(fd, buf, sizeof(buf), 0) > 0);
	TRY("ftruncate on the memfd", ftruncate(fd, 0) == 0);
	TRY("fallocate(PUNCH_HOLE) on the memfd", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0);
	TRY("fcntl F_ADD_SEALS (seals are sealed)", fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0);
	/* A new open file description through /proc: the seals are on the inode. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fd2 = open(path, O_RDWR | O_CLOEXEC);
	if (fd2 >= 0) {
		m = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
		TRY("reopen O_RDWR + mmap(PROT_WRITE, MAP_SHARED)", m != MAP_FAILED);
		close(fd2);
	} else {
		TRY("reopen /proc/self/fd/N O_RDWR", 0);
	}
	/* A private writable mapping is allowed: its writes are copies that
	 * nobody else sees (checked at the end). */
	m = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(m != MAP_FAILED);
	memset(m, 'P', LEN);
	munmap(m, LEN);
	/* A read-only shared view of it cannot be turned writable either. */
	if (!own_view) {
		m = mmap(NULL, LEN, PROT_READ, MAP_SHARED, fd, 0);
		CHECK(m != MAP_FAILED);
		own_view = (uintptr_t)m;
	}
	snprintf(what, sizeof(what), "mprotect(PROT_WRITE) of a shared view");
	TRY(what, mprotect((void *)own_view, 4096, PROT_READ | PROT_WRITE) == 0);
}

static void check_intact(const unsigned char *p, const char *whose)
{
	for (size_t i = 0; i < LEN; i++)
		if (p[i] != expect_byte(i)) {
			fprintf(stderr, "%s: %s copy changed at +%zu\n", role, whose, i);
			failures++;
			return;
		}
}

static void send_fd(int sock, int fd)
{
	char c = 'f', ctl[CMSG_SPACE(sizeof(int))] = { 0 }; /* padding too: it is sent */
	struct iovec io = { &c, 1 };
	struct msghdr mh = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	CHECK(sendmsg(sock, &mh, 0) == 1);
}

static int recv_fd(int sock)
{
	char c, ctl[CMSG_SPACE(sizeof(int))];
	struct iovec io = { &c, 1 };
	struct msghdr mh = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl) };
	struct cmsghdr *cm;
	int fd;

	CHECK(recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) == 1);
	cm = CMSG_FIRSTHDR(&mh);
	CHECK(cm && cm->cmsg_type == SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/* The unrelated process: a fresh image, given pids, address and a socket. */
static int attacker_main(char **argv)
{
	pid_t parent = (pid_t)atoi(argv[2]), worker = (pid_t)atoi(argv[3]);
	uintptr_t addr = (uintptr_t)strtoull(argv[4], NULL, 0);
	int sock = atoi(argv[5]), fd;
	unsigned char *view;

	role = "unrelated";
	attack_proc_mem(parent, addr);
	attack_proc_mem(worker, addr);
	attack_vm_writev(parent, addr);
	attack_vm_writev(worker, addr);
	attack_ptrace(parent, addr);
	attack_ptrace(worker, addr);
	fd = recv_fd(sock);
	attack_fd(fd, 0);
	view = mmap(NULL, LEN, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(view != MAP_FAILED);
	check_intact(view, "its own mapping of the memfd");
	return failures ? T_FAIL : T_PASS;
}

int main(int argc, char **argv)
{
	eternal_region *r;
	unsigned char *p;
	int sv[2], go[2], done[2], status, fd;
	pid_t worker, att;
	char c;

	if (argc > 5 && !strcmp(argv[1], "--attacker"))
		return attacker_main(argv);
	if (argc > 1 && !strcmp(argv[1], "nobody")) {
		if (getuid() != 0)
			t_skip("dropping to nobody needs root");
		CHECK(setgroups(0, NULL) == 0 && setgid(65534) == 0 && setuid(65534) == 0);
		/* After setuid the process is not dumpable; a same-user attacker
		 * must be able to reach it, as it would a normal server. */
		CHECK(prctl(PR_SET_DUMPABLE, 1) == 0);
	}
	fprintf(stderr, "running as uid %d\n", (int)getuid());
	alarm(100);

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, LEN, 4096, 1, (void **)&p), 0);
	for (size_t i = 0; i < LEN; i++)
		p[i] = expect_byte(i);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	fd = eternal_tier_fd(r, ETERNAL_TIER_SEALED);
	CHECK(fd >= 0);
	CHECK(pipe(go) == 0 && pipe(done) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);

	/* The worker: attacks itself and its parent, then waits as a target. */
	worker = fork();
	CHECK(worker >= 0);
	if (worker == 0) {
		role = "worker";
		CHECK(read(go[0], &c, 1) == 1);
		attack_proc_mem(getpid(), (uintptr_t)p);
		attack_proc_mem(getppid(), (uintptr_t)p);
		attack_vm_writev(getpid(), (uintptr_t)p);
		attack_vm_writev(getppid(), (uintptr_t)p);
		attack_ptrace(getppid(), (uintptr_t)p);
		TRY("mprotect(PROT_WRITE) of the sealed tier", mprotect(p, 4096, PROT_READ | PROT_WRITE) == 0);
		attack_fd(recv_fd(sv[1]), (uintptr_t)p);
		check_intact(p, "its inherited");
		c = failures ? 'F' : 'k';
		CHECK(write(done[1], &c, 1) == 1);
		for (;;)
			pause();
	}

	/* The parent. If the worker dies, its end of the pipes closes. */
	close(done[1]);
	close(go[0]);
	attack_proc_mem(getpid(), (uintptr_t)p);
	attack_proc_mem(worker, (uintptr_t)p);
	attack_vm_writev(getpid(), (uintptr_t)p);
	attack_vm_writev(worker, (uintptr_t)p);
	attack_ptrace(worker, (uintptr_t)p);
	TRY("mprotect(PROT_WRITE) of the sealed tier", mprotect(p, 4096, PROT_READ | PROT_WRITE) == 0);
	send_fd(sv[0], fd);
	attack_fd(recv_fd(sv[1]), (uintptr_t)p);

	/* Now the worker's turn (the parent waits, a target for it). */
	CHECK(write(go[1], "g", 1) == 1);
	send_fd(sv[0], fd);
	if (read(done[0], &c, 1) != 1 || c != 'k') {
		fprintf(stderr, "the worker failed or died\n");
		failures++;
	}

	/* The unrelated process: exec'd apart, it shares nothing with us but
	 * the socket it receives the memfd on. */
	{
		char spid[16], swk[16], saddr[32], ssock[16];
		char *av[] = { argv[0], "--attacker", spid, swk, saddr, ssock, NULL };
		int sp[2];

		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0); /* sp[1] inherited */
		snprintf(spid, sizeof(spid), "%d", (int)getpid());
		snprintf(swk, sizeof(swk), "%d", (int)worker);
		snprintf(saddr, sizeof(saddr), "%#lx", (unsigned long)(uintptr_t)p);
		snprintf(ssock, sizeof(ssock), "%d", sp[1]);
		/* argv[0], not /proc/self/exe: under valgrind that is valgrind. */
		CHECK(posix_spawn(&att, argv[0], NULL, NULL, av, environ) == 0);
		close(sp[1]);
		send_fd(sp[0], fd);
		CHECK(waitpid(att, &status, 0) == att);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != T_PASS) {
			fprintf(stderr, "unrelated attacker: status %#x\n", status);
			failures++;
		}
	}

	kill(worker, SIGKILL);
	waitpid(worker, &status, 0);
	check_intact(p, "the parent's");
	{
		static unsigned char buf[LEN];
		uintptr_t lo, hi;

		/* And the memfd itself, read through the file. */
		CHECK_RC(eternal_tier_bounds(r, ETERNAL_TIER_SEALED, &lo, &hi), 0);
		CHECK(pread(fd, buf, LEN, (off_t)((uintptr_t)p - lo)) == LEN);
		check_intact(buf, "the memfd's");
	}
	fprintf(stderr, "%s\n", failures ? "SOME WRITE GOT THROUGH" : "every write was refused; contents intact");
	CHECK_RC(eternal_region_close(r), 0);
	return failures ? T_FAIL : T_PASS;
}
