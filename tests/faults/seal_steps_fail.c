/* Description: each step of eternal_seal fails in turn (seccomp, in a child):
 * the placeholder mmap, F_ADD_SEALS, and the final mmap for strict and for off
 * mode. The contract: either the whole seal happens (zero returned, state
 * sealed, contents readable) or the region stays in warm-up (error returned,
 * contents readable and writable, allocation works) - never torn. */
#include "fault.h"
#include "eternal.h"
#include "../common.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

struct step {
	const char *name;
	enum eternal_mode mode;
	struct fault_rule rule;
};

static sigjmp_buf jb;

static void on_fault(int sig)
{
	siglongjmp(jb, sig);
}

/* Can this process read (and if @write, write) @p without a fault? */
static int accessible(volatile char *p, int write)
{
	struct sigaction sa = { .sa_handler = on_fault }, old_segv, old_bus;
	int ok = 0;

	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	if (sigsetjmp(jb, 1) == 0) {
		char c = p[0];

		if (write)
			p[0] = c;
		ok = 1;
	}
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	return ok;
}

static void run(const struct step *s)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	eternal_region *r;
	char *p, *q;
	int rc;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 40000, 0, 1, (void **)&p), 0);
	t_pattern_fill(p, 40000, 9);
	CHECK_RC(fault_install(&s->rule, 1), 0);
	rc = eternal_seal(r, s->mode, NULL);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	fprintf(stderr, "%s: eternal_seal -> %d, state %d, mode %s, readable %d, writable %d\n", s->name, rc,
		st.state, eternal_mode_name(st.mode), accessible(p, 0), accessible(p, 1));
	if (rc == 0) {
		CHECK_RC(st.state, ETERNAL_STATE_SEALED);
		CHECK(accessible(p, 0));
		CHECK(t_pattern_check(p, 40000, 9));
	} else {
		CHECK_RC(st.state, ETERNAL_STATE_WARMUP);
		CHECK(accessible(p, 1));
		CHECK(t_pattern_check(p, 40000, 9));
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 64, 0, 0, (void **)&q), 0);
		memset(q, 1, 64);
	}
	_exit(T_PASS);
}

int main(void)
{
	const int anon_fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED;
	const struct step steps[] = {
		{ "placeholder mmap", ETERNAL_MODE_STRICT,
		  { SYS_mmap, ENOMEM, { 2, 3 }, { PROT_NONE, (uint32_t)anon_fixed } } },
		{ "F_ADD_SEALS", ETERNAL_MODE_STRICT,
		  { SYS_fcntl, EIO, { 1, -1 }, { F_ADD_SEALS, 0 } } },
		{ "final mmap, strict", ETERNAL_MODE_STRICT,
		  { SYS_mmap, ENOMEM, { 2, 3 }, { PROT_READ, MAP_SHARED | MAP_FIXED } } },
		{ "final mmap, off", ETERNAL_MODE_OFF,
		  { SYS_mmap, ENOMEM, { 2, 3 }, { PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED } } },
	};
	int failed = 0;

	if (!fault_seccomp_available())
		t_skip("seccomp filters unavailable");
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int status;
		pid_t pid = fork();

		CHECK(pid >= 0);
		if (pid == 0)
			run(&steps[i]);
		CHECK(waitpid(pid, &status, 0) == pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != T_PASS) {
			fprintf(stderr, "FAILED: seal with a failing %s (status %#x)\n", steps[i].name, status);
			failed = 1;
		}
	}
	return failed ? T_FAIL : T_PASS;
}
