/* cowtest.c - static test program run inside the qemu VM by test-in-vm.sh against /dev/cowtrace.
 * Each subcommand exercises one behaviour; checks done here print TAP lines, the rest is checked on the host. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cowtrace.h"

#define PAGE 4096UL

static int failures;

static void tap(int ok, const char *name)
{
	printf("%s - %s\n", ok ? "ok" : "not ok", name);
	fflush(stdout);
	if (!ok)
		failures++;
}

/* The functions whose address ranges the host checks record ips against (nm -S cowtest). */
__attribute__((noinline)) void cow_write_page(volatile char *p)
{
	p[8] = (char)(p[8] + 1);
}

__attribute__((noinline)) int cow_read_page(volatile char *p)
{
	return p[8];
}

static char *map_pages(size_t n)
{
	char *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	/* Keep 4 KiB pages so each expected record is exactly one page. */
	madvise(p, n * PAGE, MADV_NOHUGEPAGE);
	memset(p, 0x5a, n * PAGE); /* populate before fork: these are real anon pages, not the zero page */
	return p;
}

static int dev_open(int flags)
{
	int fd = open(COWTRACE_DEVICE, flags | O_CLOEXEC);

	if (fd < 0)
		fprintf(stderr, "cowtest: open %s: %s\n", COWTRACE_DEVICE, strerror(errno));
	return fd;
}

static int add_pid(int fd, int pid)
{
	return ioctl(fd, COWTRACE_IOC_ADD_PID, &pid) < 0 ? -errno : 0;
}

static struct cowtrace_stats stats(int fd)
{
	struct cowtrace_stats st;

	memset(&st, 0, sizeof(st));
	if (ioctl(fd, COWTRACE_IOC_STATS, &st) < 0)
		perror("cowtest: STATS");
	return st;
}

static int wait_all(void)
{
	int status, bad = 0;

	while (wait(&status) > 0)
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			bad++;
	return bad;
}

/* cow NCHILD: run under cowtrace-read; children write chosen pages and only read others. */
static int cmd_cow(int nchild)
{
	size_t nw = 2 * (size_t)nchild, nr = 4;
	char *w = map_pages(nw), *r = map_pages(nr);
	pid_t pids[64];

	if (nchild < 1 || nchild > 64)
		return 2;
	printf("NCHILD %d\nSYM cow_write_page %p\n", nchild, (void *)cow_write_page);
	fflush(stdout);
	for (int i = 0; i < nchild; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[i] == 0) {
			int sum = 0;

			/* Child i owns pages i and i + nchild: interleaved so neighbours differ in pid. */
			cow_write_page(w + (size_t)i * PAGE);
			cow_write_page(w + (size_t)(i + nchild) * PAGE);
			for (size_t k = 0; k < nr; k++)
				sum += cow_read_page(r + k * PAGE);
			_exit(sum == (int)nr * 0x5a ? 0 : 3);
		}
	}
	for (int i = 0; i < nchild; i++) {
		printf("EXPECT pid=%d addr=%#lx\n", pids[i], (unsigned long)(w + (size_t)i * PAGE));
		printf("EXPECT pid=%d addr=%#lx\n", pids[i], (unsigned long)(w + (size_t)(i + nchild) * PAGE));
	}
	for (size_t k = 0; k < nr; k++)
		printf("READONLY addr=%#lx\n", (unsigned long)(r + k * PAGE));
	printf("CHILDREN-FAILED %d\n", wait_all());
	fflush(stdout);
	/* Stay alive a moment so a reader that fell behind can still read our /proc/PID/maps. */
	usleep(300 * 1000);
	return 0;
}

/* overflow NPAGES: buffer smaller than NPAGES (module loaded with a small buffer_records). */
static int cmd_overflow(int npages)
{
	char *w = map_pages((size_t)npages + 1);
	struct cowtrace_stats st0, st;
	struct cowtrace_record *recs;
	int fd = dev_open(O_RDONLY), ok;
	ssize_t n, total = 0;
	pid_t pid;

	if (fd < 0)
		return 1;
	st0 = stats(fd);
	tap(st0.abi_version == COWTRACE_ABI_VERSION && st0.record_size == sizeof(struct cowtrace_record),
	    "overflow: module ABI matches header");
	if (add_pid(fd, getpid()) < 0) {
		tap(0, "overflow: add self");
		return 1;
	}
	pid = fork();
	if (pid == 0) {
		for (int i = 0; i < npages; i++)
			cow_write_page(w + (size_t)i * PAGE);
		_exit(0);
	}
	tap(wait_all() == 0, "overflow: writer child exited 0");
	st = stats(fd);
	printf("# overflow: capacity=%llu queued=%llu recorded=%llu dropped=%llu\n",
	       (unsigned long long)st.capacity, (unsigned long long)st.queued,
	       (unsigned long long)st.recorded, (unsigned long long)st.dropped);
	tap(st.queued == st.capacity, "overflow: buffer full (queued == capacity)");
	tap(st.dropped - st0.dropped >= (unsigned long long)npages - st.capacity,
	    "overflow: dropped records counted (>= writes - capacity)");
	recs = calloc(st.capacity + 8, sizeof(*recs));
	while ((n = read(fd, recs + total, (st.capacity + 8 - total) * sizeof(*recs))) > 0) {
		total += n / (ssize_t)sizeof(*recs);
		if (stats(fd).queued == 0)
			break;
	}
	ok = total == (ssize_t)st.capacity;
	for (ssize_t i = 1; i < total; i++)
		ok &= recs[i].seq > recs[i - 1].seq;
	tap(ok, "overflow: read returns exactly capacity records, seq increasing");
	/* The seq gap after the last stored record equals the drops that followed it. */
	tap(total > 0 && st.recorded + st.dropped - 1 - recs[total - 1].seq == st.dropped - st0.dropped,
	    "overflow: seq numbers account for every dropped record");
	/* Once drained, new breaks are recorded again. */
	pid = fork();
	if (pid == 0) {
		cow_write_page(w + (size_t)npages * PAGE);
		_exit(0);
	}
	wait_all();
	n = read(fd, recs, 8 * sizeof(*recs));
	ok = 0;
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(*recs); i++)
		ok |= recs[i].pid == (unsigned)pid && recs[i].addr == (unsigned long)(w + (size_t)npages * PAGE);
	tap(ok, "overflow: records flow again after draining");
	ioctl(fd, COWTRACE_IOC_CLEAR);
	free(recs);
	close(fd);
	return failures ? 1 : 0;
}

static pid_t unused_pid(void)
{
	/* Counting down from the top of the pid space finds a free pid at once on a fresh VM. */
	for (pid_t p = 4194000; p > 1000; p--)
		if (kill(p, 0) < 0 && errno == ESRCH)
			return p;
	return -1;
}

/* unknown: bad pids are refused with the documented errors and trace nothing. */
static int cmd_unknown(void)
{
	int fd = dev_open(O_WRONLY), neg = -5, ret;
	pid_t p = unused_pid();

	if (fd < 0)
		return 1;
	ret = add_pid(fd, p);
	tap(ret == -ESRCH, "unknown pid: ADD_PID fails with ESRCH");
	tap(stats(fd).traced == 0 && stats(fd).armed == 0, "unknown pid: nothing traced, hooks not armed");
	ret = ioctl(fd, COWTRACE_IOC_ADD_PID, &neg) < 0 ? -errno : 0;
	tap(ret == -EINVAL, "negative pid: ADD_PID fails with EINVAL");
	ret = add_pid(fd, 2); /* kthreadd */
	tap(ret == -EINVAL, "kernel thread: ADD_PID fails with EINVAL");
	ret = ioctl(fd, COWTRACE_IOC_DEL_PID, &p) < 0 ? -errno : 0;
	tap(ret == -ESRCH, "unknown pid: DEL_PID fails with ESRCH");
	close(fd);
	return failures ? 1 : 0;
}

/* readers: one reader at a time (EBUSY), control-only opens always allowed. */
static int cmd_readers(void)
{
	int a = dev_open(O_RDONLY), b, c, d;

	tap(a >= 0, "two readers: first reader opens");
	b = open(COWTRACE_DEVICE, O_RDONLY | O_CLOEXEC);
	tap(b < 0 && errno == EBUSY, "two readers: second O_RDONLY open fails with EBUSY");
	c = open(COWTRACE_DEVICE, O_RDWR | O_CLOEXEC);
	tap(c < 0 && errno == EBUSY, "two readers: O_RDWR open fails with EBUSY");
	d = open(COWTRACE_DEVICE, O_WRONLY | O_CLOEXEC);
	tap(d >= 0 && stats(d).abi_version == COWTRACE_ABI_VERSION, "two readers: control (O_WRONLY) open works alongside");
	close(a);
	a = open(COWTRACE_DEVICE, O_RDONLY | O_CLOEXEC);
	tap(a >= 0, "two readers: reader slot free again after close");
	close(a);
	close(d);
	return failures ? 1 : 0;
}

static int kprobe_listed(void)
{
	char line[512];
	int found = 0;
	FILE *f = fopen("/sys/kernel/debug/kprobes/list", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, "wp_page_copy") != NULL;
	fclose(f);
	return found;
}

/* hooks: the kprobe exists only while something is traced, and goes when the tree exits. */
static int cmd_hooks(void)
{
	int fd = dev_open(O_RDONLY), pfd[2], ready[2], n, ok = 0;
	char *p = map_pages(1), c;
	struct cowtrace_record r[64];
	ssize_t got;
	pid_t pid;

	if (fd < 0 || pipe(pfd) < 0 || pipe(ready) < 0)
		return 1;
	tap(stats(fd).armed == 0 && kprobe_listed() == 0, "idle: no kprobe installed while nothing is traced");
	pid = fork();
	if (pid == 0) {
		close(pfd[1]);
		close(ready[0]);
		/* Fork a grandchild before being traced: ADD_PID must pick up live descendants too. */
		if (fork() == 0) {
			close(ready[1]);
			(void)!read(pfd[0], &c, 1);
			cow_write_page(p);
			_exit(0);
		}
		close(ready[1]); /* the grandchild exists now */
		(void)!read(pfd[0], &c, 1);
		_exit(wait_all());
	}
	close(pfd[0]);
	close(ready[1]);
	while (read(ready[0], &c, 1) > 0) /* EOF once the child (and the grandchild) closed it */
		;
	close(ready[0]);
	n = pid;
	tap(ioctl(fd, COWTRACE_IOC_ADD_PID, &n) == 2, "ADD_PID adds the process and its live descendant (returns 2)");
	tap(stats(fd).armed == 1 && kprobe_listed() == 1, "tracing: kprobe on wp_page_copy installed");
	close(pfd[1]); /* both read EOF and finish */
	wait_all();
	for (int i = 0; i < 500 && stats(fd).armed; i++) /* disarming is deferred to a workqueue */
		usleep(20 * 1000);
	tap(stats(fd).traced == 0 && stats(fd).armed == 0 && kprobe_listed() == 0,
	    "tree exited: set empty and kprobe removed");
	while (stats(fd).queued && (got = read(fd, r, sizeof(r))) > 0)
		for (ssize_t i = 0; i < got / (ssize_t)sizeof(r[0]); i++)
			ok |= r[i].addr == (unsigned long)p && r[i].pid != (unsigned)pid && r[i].pid != (unsigned)getpid();
	tap(ok, "pre-existing grandchild's write recorded under its own pid");
	close(fd);
	return failures ? 1 : 0;
}

/* busy SECONDS READYFILE: keep producing COW breaks while traced; the script rmmods meanwhile,
 * once READYFILE exists (created after tracing is armed). */
static int cmd_busy(double seconds, const char *readyfile)
{
	char *w = map_pages(16);
	int fd = dev_open(O_WRONLY), bad = 0, rounds = 0;
	struct timespec t0, t;

	if (fd < 0 || add_pid(fd, getpid()) < 0) {
		perror("cowtest busy: add");
		return 1;
	}
	tap(stats(fd).armed == 1, "busy: tracing armed before rmmod");
	close(fd);
	close(open(readyfile, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)); /* an open fd would pin the module; rmmod must find it unused */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		pid_t pid = fork();

		if (pid == 0) {
			for (int i = 0; i < 16; i++)
				cow_write_page(w + (size_t)i * PAGE);
			_exit(0);
		}
		bad += wait_all();
		rounds++;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
	printf("# busy: %d fork rounds, %d bad\n", rounds, bad);
	return bad ? 1 : 0;
}

/* remote: an untraced process writes into a traced one through /proc/PID/mem; the copy is the traced
 * process's page, so it is recorded under its pid, with the writer as tid and the remote flag. */
static int cmd_remote(void)
{
	char *p = map_pages(1), fn[64], c = 'x';
	int fd = dev_open(O_RDONLY | O_NONBLOCK), pfd[2], mem, n, found = 0, wrong = 0;
	struct cowtrace_record r[64];
	ssize_t got;
	pid_t pid;

	if (fd < 0 || pipe(pfd) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		close(pfd[1]);
		(void)!read(pfd[0], &c, 1);
		_exit(p[8] == 'x' ? 0 : 3); /* the remote write must be visible to the target */
	}
	close(pfd[0]);
	n = pid;
	if (ioctl(fd, COWTRACE_IOC_ADD_PID, &n) < 0)
		return 1;
	snprintf(fn, sizeof(fn), "/proc/%d/mem", pid);
	mem = open(fn, O_RDWR | O_CLOEXEC);
	tap(mem >= 0 && pwrite(mem, &c, 1, (off_t)(unsigned long)(p + 8)) == 1, "remote: write through /proc/PID/mem");
	close(pfd[1]);
	tap(wait_all() == 0, "remote: target sees the written byte");
	ioctl(fd, COWTRACE_IOC_CLEAR);
	while ((got = read(fd, r, sizeof(r))) > 0)
		for (ssize_t i = 0; i < got / (ssize_t)sizeof(r[0]); i++) {
			if (r[i].addr != (unsigned long)p)
				continue;
			if (r[i].pid == (unsigned)pid && r[i].tid == (unsigned)getpid() &&
			    (r[i].flags & COWTRACE_F_REMOTE) && !(r[i].flags & COWTRACE_F_USER))
				found++;
			else
				wrong++;
		}
	tap(found == 1 && wrong == 0, "remote: recorded under the target's pid, writer's tid, flag remote");
	close(mem);
	close(fd);
	return failures ? 1 : 0;
}

static long anon_huge_kb(void)
{
	char line[256];
	long kb = 0, v;
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &v) == 1)
			kb = v;
	if (f)
		fclose(f);
	return kb;
}

/* thp: a child's write into an inherited transparent huge page is one 4 KiB record (the PMD is split). */
static int cmd_thp(void)
{
	size_t len = 4UL << 20;
	char *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *p;
	int fd = dev_open(O_RDONLY | O_NONBLOCK), nrec = 0, match = 0; /* drain, never block */
	struct cowtrace_record r[64];
	ssize_t n;
	pid_t pid;

	if (raw == MAP_FAILED || fd < 0)
		return 1;
	p = (char *)(((unsigned long)raw + (2UL << 20) - 1) & ~((2UL << 20) - 1));
	madvise(p, 2UL << 20, MADV_HUGEPAGE);
	memset(p, 1, 2UL << 20);
	if (anon_huge_kb() < 2048) {
		printf("ok - thp: write into an inherited huge page recorded as one 4 KiB page # SKIP no THP allocated\n");
		return 0;
	}
	if (add_pid(fd, getpid()) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		cow_write_page(p + 5 * PAGE);
		_exit(0);
	}
	wait_all();
	ioctl(fd, COWTRACE_IOC_CLEAR);
	while ((n = read(fd, r, sizeof(r))) > 0)
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(r[0]); i++) {
			if (r[i].pid != (unsigned)pid)
				continue;
			nrec += r[i].addr >= (unsigned long)p && r[i].addr < (unsigned long)p + (2UL << 20);
			match += r[i].addr == (unsigned long)(p + 5 * PAGE);
		}
	tap(nrec == 1 && match == 1, "thp: write into an inherited huge page recorded as one 4 KiB page");
	close(fd);
	return failures ? 1 : 0;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* cost LABEL NPAGES: time per copy-on-write break in a child, for the record (TCG: relative only). */
static int cmd_cost(const char *label, int npages)
{
	char *w = map_pages((size_t)npages);
	double best = 1e9;

	for (int round = 0; round < 5; round++) {
		int pfd[2];
		double dt;

		if (pipe(pfd) < 0)
			return 1;
		if (fork() == 0) {
			double t0 = now();

			for (int i = 0; i < npages; i++)
				cow_write_page(w + (size_t)i * PAGE);
			dt = now() - t0;
			(void)!write(pfd[1], &dt, sizeof(dt));
			_exit(0);
		}
		if (read(pfd[0], &dt, sizeof(dt)) == sizeof(dt) && dt < best)
			best = dt;
		wait_all();
		close(pfd[0]);
		close(pfd[1]);
	}
	printf("# cost %s: %.0f ns per COW break (best of 5 x %d pages, TCG)\n", label, best * 1e9 / npages, npages);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: cowtest cow N | overflow N | unknown | readers | hooks | remote | thp | cost LABEL N | busy SECONDS READYFILE\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "cow") && argc > 2)
		return cmd_cow(atoi(argv[2]));
	if (!strcmp(argv[1], "overflow") && argc > 2)
		return cmd_overflow(atoi(argv[2]));
	if (!strcmp(argv[1], "unknown"))
		return cmd_unknown();
	if (!strcmp(argv[1], "readers"))
		return cmd_readers();
	if (!strcmp(argv[1], "hooks"))
		return cmd_hooks();
	if (!strcmp(argv[1], "remote"))
		return cmd_remote();
	if (!strcmp(argv[1], "thp"))
		return cmd_thp();
	if (!strcmp(argv[1], "cost") && argc > 3)
		return cmd_cost(argv[2], atoi(argv[3]));
	if (!strcmp(argv[1], "busy") && argc > 3)
		return cmd_busy(atof(argv[2]), argv[3]);
	fprintf(stderr, "cowtest: unknown command %s\n", argv[1]);
	return 2;
}
