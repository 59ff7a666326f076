/* Description: signals arrive while trapped writes are being handled. A
 * thread bombards the writer with SIGUSR1 (SA_RESTART) and SIGUSR2 (no
 * restart) while it writes once to each of 1024 sealed-tier pages in trap mode.
 * argv[1] engine; argv[2] "plain" (the handlers touch no region memory) or
 * "nested" (each handler also writes a sealed-tier page: a trap inside a
 * signal handler, possibly inside the trap handler). Every write must land,
 * every page be trapped exactly once, and the process end normally. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 1024
#define HPAGES 64
#define PAGE 4096

static char *data, *hdata;
static pid_t writer_tid;
static atomic_int stop, nsig, hnext;
static atomic_uchar hseen[HPAGES];
static int nested;

static void on_sig(int sig)
{
	int e = errno;

	atomic_fetch_add(&nsig, 1);
	if (nested) {
		int k = atomic_fetch_add(&hnext, 1);
		int pg = k % HPAGES;

		/* Same value on every visit, so the final check is exact. */
		hdata[pg * PAGE + (k / HPAGES) % PAGE] = (char)(sig == SIGUSR1 ? 1 : 2) | 4;
		atomic_store(&hseen[pg], 1);
	}
	errno = e;
}

static void *sender(void *arg)
{
	(void)arg;
	for (int i = 0; !atomic_load(&stop); i++) {
		syscall(SYS_tgkill, getpid(), writer_tid, i & 1 ? SIGUSR2 : SIGUSR1);
		if (i % 8 == 0)
			usleep(20);
	}
	return NULL;
}

static void spin_us(long us)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000 < us);
}

static int run(enum eternal_trap_engine engine)
{
	struct eternal_trap_opts to = { .sz = sizeof(to), .engine = engine, .ring_capacity = 4096 };
	struct eternal_stats st = { .sz = sizeof(st) };
	static struct eternal_trap_event ev[4096];
	struct sigaction sa = { .sa_handler = on_sig };
	eternal_region *r;
	pthread_t th;
	int n, hp = 0, waited = 0;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, NPAGES * PAGE, PAGE, 7, (void **)&data), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, HPAGES * PAGE, PAGE, 8, (void **)&hdata), 0);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_TRAP, &to), 0);

	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_flags = 0;
	sigaction(SIGUSR2, &sa, NULL);
	writer_tid = (pid_t)syscall(SYS_gettid);
	CHECK(pthread_create(&th, NULL, sender, NULL) == 0);
	/* On a loaded machine the sender may not run for a while: start
	 * writing only once the bombardment has begun (10 s at most). */
	for (int w = 0; w < 100000 && !atomic_load(&nsig); w++)
		usleep(100);
	for (int pass = 0; pass < 3; pass++)
		for (int i = 0; i < NPAGES; i++) {
			data[i * PAGE + i % PAGE] = (char)(i + 1);
			if (pass == 0) {
				spin_us(10); /* spread the traps over the bombardment */
				/* With three threads on two CPUs the sender may starve:
				 * pace the traps so that 64 signals land among them
				 * (waiting 10 s at most in all). */
				while (atomic_load(&nsig) < (i + 1) * 64 / NPAGES && waited < 100000) {
					usleep(100);
					waited++;
				}
			}
		}
	atomic_store(&stop, 1);
	CHECK(pthread_join(th, NULL) == 0);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);

	for (int i = 0; i < NPAGES; i++)
		for (int j = 0; j < PAGE; j++)
			CHECK(data[i * PAGE + j] == (j == i % PAGE ? (char)(i + 1) : 0));
	for (int i = 0; i < HPAGES; i++)
		hp += atomic_load(&hseen[i]);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	fprintf(stderr, "engine %s: %d signals, %d handler pages, %llu trapped writes, %llu dropped\n",
		eternal_engine_name(st.engine), atomic_load(&nsig), hp,
		(unsigned long long)st.trap_writes[ETERNAL_TIER_SEALED], (unsigned long long)st.trap_dropped);
	CHECK(atomic_load(&nsig) >= 50);
	CHECK_RC(st.trap_writes[ETERNAL_TIER_SEALED], NPAGES + hp);
	n = eternal_trap_read(r, ev, 4096);
	CHECK_RC(n, NPAGES + hp);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			CHECK((ev[i].addr & ~(uint64_t)(PAGE - 1)) != (ev[j].addr & ~(uint64_t)(PAGE - 1)));
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}

int main(int argc, char **argv)
{
	enum eternal_trap_engine engine = (enum eternal_trap_engine)t_engine(argc > 1 ? argv[1] : "auto");
	int status, p;
	pid_t pid;

	nested = argc > 2 && !strcmp(argv[2], "nested");
	p = eternal_trap_probe(engine);
	if (p == 0)
		t_skip("engine %s unavailable on this kernel", argc > 1 ? argv[1] : "auto");
	CHECK(p == 1);
	/* In a child, so that a death by signal is reported, not suffered. */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		alarm(60);
		_exit(run(engine));
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "writer killed by signal %d (%s)\n", WTERMSIG(status), strsignal(WTERMSIG(status)));
		return T_FAIL;
	}
	return WEXITSTATUS(status);
}
