/* Description: sealing fails half-way because someone else holds a writable
 * shared mapping of the sealed tier's memfd (reopened through /proc/self/fd):
 * eternal_seal returns -EBUSY and the region is still in warm-up, readable,
 * writable and allocating, never torn; once that mapping is gone the retry
 * seals, and the tier is then read-only with its contents intact. */
#include "fault.h"
#include "eternal.h"
#include "../common.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static char *blk[16];

static void check_all(int extra)
{
	for (int i = 0; i < 16; i++)
		CHECK(t_pattern_check(blk[i], 5000, (unsigned)(i + extra)));
}

int main(void)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	eternal_region *r;
	char path[64], *other, *q;
	int fd, fd2, status;
	pid_t pid;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (int i = 0; i < 16; i++) {
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 5000, 0, 2, (void **)&blk[i]), 0);
		t_pattern_fill(blk[i], 5000, (unsigned)i);
	}
	fd = eternal_tier_fd(r, ETERNAL_TIER_SEALED);
	CHECK(fd >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fd2 = open(path, O_RDWR | O_CLOEXEC);
	CHECK(fd2 >= 0);
	other = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
	CHECK(other != MAP_FAILED);

	for (int mode = ETERNAL_MODE_OFF; mode <= ETERNAL_MODE_AUDIT; mode++) {
		int rc = eternal_seal(r, (enum eternal_mode)mode, NULL);

		/* The trap/audit engines may be refused first on a kernel
		 * without them; either way, nothing may have changed. */
		CHECK(rc == -EBUSY || (mode >= ETERNAL_MODE_TRAP && rc == -EOPNOTSUPP));
		CHECK_RC(eternal_stats_get(r, &st), 0);
		CHECK_RC(st.state, ETERNAL_STATE_WARMUP);
		check_all(0);
	}
	/* Still warm-up: writes land. (The memfd itself holds nothing until
	 * a seal succeeds: warm-up pages are private until published.) */
	for (int i = 0; i < 16; i++)
		t_pattern_fill(blk[i], 5000, (unsigned)i + 100);
	CHECK(lseek(fd, 0, SEEK_END) == 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 100, 0, 0, (void **)&q), 0);
	memset(q, 'q', 100);
	CHECK_RC(eternal_free(r, q), 0);

	/* Closing the fd is not enough: the mapping is what blocks. */
	close(fd2);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), -EBUSY);
	CHECK(munmap(other, 1 << 16) == 0);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.state, ETERNAL_STATE_SEALED);
	CHECK_RC(st.mode, ETERNAL_MODE_STRICT);
	check_all(100);

	/* Read-only now: a write dies with SIGSEGV. */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		blk[5][7] = 'x';
		_exit(T_PASS);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
	check_all(100);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
