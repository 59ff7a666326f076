/* trap_cost.c - what trapping costs: microseconds per trapped first write for
 * each engine over 10,000 distinct pages, audit scans, and the log writer. */
#define _GNU_SOURCE
#include "eternal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

#define NPAGES 10000
#define AUDIT_PAGES 16384 /* 64 MiB */

static int repeats = 7;

/* BENCH_CLOCK=cpu: process CPU time (all threads: the thread engine's
 * handler and the log writer count too) instead of wall time, which on a
 * shared, loaded machine mostly measures waiting for a CPU. */
static clockid_t g_clock = CLOCK_MONOTONIC;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(g_clock, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void report(const char *what, double *v, int n, const char *unit)
{
	double lo, hi;
	double m = median(v, n);
	lo = v[0];
	hi = v[n - 1];
	printf("| %-44s | %10.3f | %10.3f | %10.3f | %s |\n", what, m, lo, hi, unit);
	fflush(stdout);
}

/* One region whose sealed tier holds @pages one-page blocks, adjacent and
 * filled: block lookups stay O(1) as for real objects (a lookup inside one
 * huge block walks the start map back to its start). */
static char *make_region(eternal_region **r, size_t pages)
{
	void *p, *first = NULL;
	struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = (pages + 64) * 4096 };
	if (eternal_region_create(&o, r) < 0)
		exit(1);
	for (size_t i = 0; i < pages; i++) {
		if (eternal_alloc(*r, ETERNAL_TIER_SEALED, 4096, 4096, 1, &p) < 0) {
			fprintf(stderr, "region setup failed\n");
			exit(1);
		}
		if (!first)
			first = p;
		if ((char *)p != (char *)first + i * 4096) {
			fprintf(stderr, "blocks not adjacent\n");
			exit(1);
		}
		memset(p, 1, 4096);
	}
	return first;
}

/* microseconds per first write to NPAGES pages, one run */
static double run_trap(enum eternal_mode mode, enum eternal_trap_engine e, unsigned flags, const char *log_dir)
{
	eternal_region *r;
	char *p = make_region(&r, NPAGES);
	struct eternal_trap_opts o = { .sz = sizeof(o), .engine = e, .flags = flags,
				       .ring_capacity = NPAGES + 16, .log_dir = log_dir };
	int rc = eternal_seal(r, mode, &o);
	if (rc < 0) {
		fprintf(stderr, "seal %s/%s: %s\n", eternal_mode_name(mode), eternal_engine_name(e), strerror(-rc));
		exit(1);
	}
	volatile char sink = 0;
	for (size_t i = 0; i < NPAGES; i++) /* reads first: map the pages, so only the write fault is timed */
		sink += p[i * 4096];
	double t0 = now_us();
	for (size_t i = 0; i < NPAGES; i++)
		((volatile char *)p)[i * 4096 + 8] = 2;
	double t1 = now_us();
	if (mode == ETERNAL_MODE_TRAP) {
		struct eternal_stats st = { .sz = sizeof(st) };
		eternal_stats_get(r, &st);
		if (st.trap_writes[0] != NPAGES || st.trap_dropped) {
			fprintf(stderr, "expected %d traps, got %lu (dropped %lu)\n", NPAGES,
				(unsigned long)st.trap_writes[0], (unsigned long)st.trap_dropped);
			exit(1);
		}
	}
	eternal_region_close(r);
	return (t1 - t0) / NPAGES;
}

static void bench_engine(const char *label, enum eternal_mode mode, enum eternal_trap_engine e, unsigned flags,
			 const char *log_dir)
{
	double v[64];
	if (mode == ETERNAL_MODE_TRAP && eternal_trap_probe(e) != 1) {
		printf("| %-44s | unavailable | | | |\n", label);
		return;
	}
	for (int i = 0; i < repeats; i++)
		v[i] = run_trap(mode, e, flags, log_dir);
	report(label, v, repeats, "us per first write");
}

/* The floor under the precise engine: the same kernel round trip (WP fault,
 * SIGBUS, un-protect, retry and COW) with a handler that records nothing. */
static int floor_uffd;
static void floor_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)si->si_addr & ~4095ul, .len = 4096 }, .mode = 0 };
	ioctl(floor_uffd, UFFDIO_WRITEPROTECT, &wp);
}

static double run_floor(void)
{
	size_t len = (size_t)NPAGES * 4096;
	int mfd = memfd_create("floor", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, (off_t)len) < 0)
		exit(1);
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
	floor_uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_SIGBUS | UFFD_FEATURE_PAGEFAULT_FLAG_WP |
					      (1 << 12) /* WP_HUGETLBFS_SHMEM */ };
	struct uffdio_register reg = { .range = { .start = (uintptr_t)p, .len = len }, .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .range = { .start = (uintptr_t)p, .len = len },
					  .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	if (p == MAP_FAILED || floor_uffd < 0 || ioctl(floor_uffd, UFFDIO_API, &api) < 0 ||
	    ioctl(floor_uffd, UFFDIO_REGISTER, &reg) < 0 || ioctl(floor_uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		perror("floor setup");
		exit(1);
	}
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = floor_handler;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGBUS, &sa, &old);
	volatile char sink = 0;
	for (size_t i = 0; i < NPAGES; i++)
		sink += p[i * 4096];
	double t0 = now_us();
	for (size_t i = 0; i < NPAGES; i++)
		((volatile char *)p)[i * 4096 + 8] = 2;
	double t1 = now_us();
	sigaction(SIGBUS, &old, NULL);
	close(floor_uffd);
	munmap(p, len);
	close(mfd);
	return (t1 - t0) / NPAGES;
}

static void bench_floor(void)
{
	double v[64];
	for (int i = 0; i < repeats; i++)
		v[i] = run_floor();
	report("floor: bare uffd SIGBUS handler, no record", v, repeats, "us per first write");
}

static void bench_audit(void)
{
	eternal_region *r;
	struct eternal_dirty_page *d = malloc(sizeof(*d) * AUDIT_PAGES);
	double clean[64], some[64], all[64], fw[64];
	int n;

	if (eternal_audit_probe() != 1) {
		printf("| audit | unavailable | | | |\n");
		return;
	}
	char *p = make_region(&r, AUDIT_PAGES);
	if (eternal_seal(r, ETERNAL_MODE_AUDIT, NULL) < 0)
		exit(1);
	for (int i = 0; i < repeats; i++) {
		/* a clean scan: many tries per repeat, take the median of those */
		double t[101];
		for (int k = 0; k < 101; k++) {
			double t0 = now_us();
			n = eternal_audit_scan(r, ETERNAL_AUDIT_REPROTECT, d, AUDIT_PAGES);
			t[k] = now_us() - t0;
			if (n != 0)
				exit(1);
		}
		clean[i] = median(t, 101);
		/* 164 scattered pages */
		for (int k = 0; k < 164; k++)
			p[(size_t)(k * 97 % AUDIT_PAGES) * 4096] = 3;
		double t0 = now_us();
		n = eternal_audit_scan(r, ETERNAL_AUDIT_REPROTECT, d, AUDIT_PAGES);
		some[i] = now_us() - t0;
		if (n != 164) {
			fprintf(stderr, "164-page scan found %d\n", n);
			exit(1);
		}
		/* every page; the first writes themselves are timed too */
		t0 = now_us();
		for (size_t k = 0; k < AUDIT_PAGES; k++)
			p[k * 4096 + 1] = 4;
		fw[i] = (now_us() - t0) / AUDIT_PAGES;
		t0 = now_us();
		n = eternal_audit_scan(r, ETERNAL_AUDIT_REPROTECT, d, AUDIT_PAGES);
		all[i] = now_us() - t0;
		if (n != AUDIT_PAGES) {
			fprintf(stderr, "full scan found %d\n", n);
			exit(1);
		}
	}
	report("audit scan+reprotect, 64 MiB clean", clean, repeats, "us per scan");
	report("audit scan+reprotect, 164 pages written", some, repeats, "us per scan");
	report("audit scan+reprotect, all 16384 pages", all, repeats, "us per scan");
	report("audit first write (WP_ASYNC, in kernel)", fw, repeats, "us per first write");
	eternal_region_close(r);
	free(d);
}

/* The log sink: one ~450-byte JSON line per record, as the writer thread
 * emits them, to a file on this machine's disk. write(2) per record against
 * io_uring: per record submit+wait (a record is in the kernel before the
 * next, the same guarantee) and batched (32 in flight: a crash can lose what
 * is still queued). */
#define LOG_RECS 20000
static void bench_log(const char *dir)
{
	char path[512], line[512];
	double wv[64], uv[64], bv[64];
	memset(line, 'x', sizeof(line));
	line[449] = '\n';
	snprintf(path, sizeof(path), "%s/bench.jsonl", dir);
	for (int i = 0; i < repeats; i++) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		double t0 = now_us();
		for (int k = 0; k < LOG_RECS; k++)
			if (write(fd, line, 450) != 450)
				exit(1);
		wv[i] = (now_us() - t0) / LOG_RECS;
		close(fd);
#ifdef HAVE_LIBURING
		struct io_uring ring;
		struct io_uring_cqe *cqe;
		if (io_uring_queue_init(64, &ring, 0) < 0) {
			uv[i] = bv[i] = -1;
			continue;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		t0 = now_us();
		for (int k = 0; k < LOG_RECS; k++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			io_uring_prep_write(sqe, fd, line, 450, -1);
			io_uring_submit_and_wait(&ring, 1);
			io_uring_wait_cqe(&ring, &cqe);
			if (cqe->res != 450)
				exit(1);
			io_uring_cqe_seen(&ring, cqe);
		}
		uv[i] = (now_us() - t0) / LOG_RECS;
		close(fd);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		t0 = now_us();
		for (int k = 0; k < LOG_RECS; k += 32) {
			for (int j = 0; j < 32; j++) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
				io_uring_prep_write(sqe, fd, line, 450, -1);
			}
			io_uring_submit_and_wait(&ring, 32);
			for (int j = 0; j < 32; j++) {
				io_uring_wait_cqe(&ring, &cqe);
				io_uring_cqe_seen(&ring, cqe);
			}
		}
		bv[i] = (now_us() - t0) / LOG_RECS;
		close(fd);
		io_uring_queue_exit(&ring);
#else
		uv[i] = bv[i] = -1;
#endif
	}
	unlink(path);
	report("log record: write(2), O_APPEND", wv, repeats, "us per record");
	report("log record: io_uring, submit+wait each", uv, repeats, "us per record");
	report("log record: io_uring, batches of 32", bv, repeats, "us per record");
}

int main(int argc, char **argv)
{
	struct utsname u;
	char dir[] = "/var/tmp/eternal-bench-XXXXXX";
	const char *only = argc > 1 ? argv[1] : "all";
	if (getenv("REPEATS"))
		repeats = atoi(getenv("REPEATS"));
	if (repeats < 1 || repeats > 64)
		repeats = 7;
	if (getenv("BENCH_CLOCK") && !strcmp(getenv("BENCH_CLOCK"), "cpu"))
		g_clock = CLOCK_PROCESS_CPUTIME_ID;
	uname(&u);
	if (!mkdtemp(dir))
		return 1;
	double load[3] = { 0, 0, 0 };
	getloadavg(load, 3);
	printf("kernel %s, %ld cpus, %d repeats, %d pages per trap run, clock %s, load average %.2f %.2f %.2f\n\n",
	       u.release, sysconf(_SC_NPROCESSORS_ONLN), repeats, NPAGES,
	       g_clock == CLOCK_MONOTONIC ? "wall (CLOCK_MONOTONIC)" : "process CPU time", load[0], load[1], load[2]);
	printf("| what | median | min | max | unit |\n|---|---|---|---|---|\n");
	if (!strcmp(only, "precise")) {
		bench_floor();
		bench_engine("precise (uffd WP + SIGBUS)", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_PRECISE, 0, NULL);
		bench_engine("precise, FP_ONLY (no stack copy)", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_PRECISE,
			     ETERNAL_TRAP_FP_ONLY, NULL);
	}
	if (!strcmp(only, "thread")) {
		bench_engine("thread, follows the writer's CPU", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_THREAD, 0, NULL);
		bench_engine("thread, busy-poll", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_THREAD, ETERNAL_TRAP_BUSY_POLL, NULL);
	}
	if (!strcmp(only, "all") || !strcmp(only, "trap")) {
		bench_engine("baseline: mode off (private COW fault)", ETERNAL_MODE_OFF, 0, 0, NULL);
		bench_floor();
		bench_engine("precise (uffd WP + SIGBUS)", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_PRECISE, 0, NULL);
		bench_engine("precise, FP_ONLY (no stack copy)", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_PRECISE,
			     ETERNAL_TRAP_FP_ONLY, NULL);
		bench_engine("precise + JSON log dir", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_PRECISE, 0, dir);
		bench_engine("thread, follows the writer's CPU", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_THREAD, 0, NULL);
		bench_engine("thread, busy-poll", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_THREAD, ETERNAL_TRAP_BUSY_POLL, NULL);
		bench_engine("mprotect + SIGSEGV", ETERNAL_MODE_TRAP, ETERNAL_ENGINE_MPROTECT, 0, NULL);
	}
	if (!strcmp(only, "all") || !strcmp(only, "audit"))
		bench_audit();
	if (!strcmp(only, "all") || !strcmp(only, "log"))
		bench_log(dir);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : 1;
}
