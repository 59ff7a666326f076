/* Description: publishing the warm-up pages into the sealed tier's memfd fails
 * at seal: ftruncate past RLIMIT_FSIZE (SIGXFSZ at its default action, then
 * ignored), fallocate refused (ENOSPC) and ftruncate refused (EIO) by a
 * seccomp filter. Each seal returns an error, the memfd stays empty, the
 * region stays in warm-up with its blocks intact and allocating, and the seal
 * works once allowed. */
#include "fault.h"
#include "eternal.h"
#include "../common.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define STEP (64 << 10)

static eternal_region *r;
static char *first, *big;

static void setup(void)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .name = "faultgrow", .grow_step = STEP };

	CHECK_RC(eternal_region_create(&o, &r), 0);
	/* One large block fills the first granule of growth exactly. */
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, STEP, 0, 3, (void **)&first), 0);
	t_pattern_fill(first, STEP, 11);
}

static off_t memfd_size(void)
{
	struct stat st;

	CHECK(fstat(eternal_tier_fd(r, ETERNAL_TIER_SEALED), &st) == 0);
	return st.st_size;
}

/* The seal is refused: defined error, nothing torn, warm-up goes on. */
static void refused(int times, int want)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	void *p;

	for (int i = 0; i < times; i++)
		CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), want);
	CHECK_RC(memfd_size(), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.state, ETERNAL_STATE_WARMUP);
	CHECK_RC(st.tier[ETERNAL_TIER_SEALED].blocks, big ? 2 : 1);
	CHECK(t_pattern_check(first, STEP, 11));
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 4 * STEP, 0, 0, &p), 0);
	memset(p, 1, 4 * STEP);
	CHECK_RC(eternal_free(r, p), 0);
	first[0] ^= 0; /* still writable */
}

/* And once the cause is gone, the region seals with its contents. */
static void recovers(void)
{
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK(memfd_size() >= STEP);
	CHECK(t_pattern_check(first, STEP, 11));
	CHECK_RC(eternal_region_close(r), 0);
}

static int seccomp_case(int nr, int err, int want)
{
	int status;
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		struct fault_rule rule = { nr, err, FAULT_ANY };

		setup();
		big = NULL;
		CHECK_RC(fault_install(&rule, 1), 0);
		refused(5, want);
		/* A seccomp filter cannot be lifted: the cow tier still works. */
		{
			void *p;

			CHECK_RC(eternal_alloc(r, ETERNAL_TIER_COW, 64, 0, 0, &p), 0);
		}
		_exit(T_PASS);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		fprintf(stderr, "child (syscall %d -> errno %d) killed by signal %d\n", nr, err, WTERMSIG(status));
	return WIFEXITED(status) ? WEXITSTATUS(status) : T_FAIL;
}

/* Under a file-size limit with SIGXFSZ at its default action, publishing
 * past the limit must still be an error return, not a killed process. */
static int fsize_default_signal(void)
{
	int status;
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		struct rlimit rl;

		signal(SIGXFSZ, SIG_DFL);
		setup();
		CHECK(getrlimit(RLIMIT_FSIZE, &rl) == 0);
		rl.rlim_cur = 2 * STEP;
		CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 4 * STEP, 0, 0, (void **)&big), 0);
		refused(2, -ENOMEM);
		_exit(T_PASS);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		fprintf(stderr, "growth past RLIMIT_FSIZE killed the process with signal %d\n", WTERMSIG(status));
	return WIFEXITED(status) ? WEXITSTATUS(status) : T_FAIL;
}

int main(void)
{
	struct rlimit saved, rl;

	CHECK_RC(fsize_default_signal(), T_PASS);

	/* RLIMIT_FSIZE: the kernel's own refusal. SIGXFSZ would kill the
	 * process (its default action), so a program under a file-size limit
	 * must ignore it; the library then sees EFBIG. */
	signal(SIGXFSZ, SIG_IGN);
	setup();
	CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
	rl = saved;
	rl.rlim_cur = 2 * STEP;
	CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 4 * STEP, 0, 0, (void **)&big), 0);
	refused(3, -ENOMEM);
	CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
	recovers();

	if (!fault_seccomp_available())
		t_skip("seccomp filters unavailable");
	CHECK_RC(seccomp_case(SYS_fallocate, ENOSPC, -ENOMEM), T_PASS);
	CHECK_RC(seccomp_case(SYS_ftruncate, EIO, -EIO), T_PASS);
	return T_PASS;
}
