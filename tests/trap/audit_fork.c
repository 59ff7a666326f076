/* Description: audit mode re-arms in a forked child: the child's scan shows
 * the child's writes only (not every page, as it would with the write-protect
 * bits that fork drops), and the parent's scan is unaffected by the child. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <sys/wait.h>

int main(void)
{
	struct fixture f;
	struct eternal_dirty_page d[256];

	int p = eternal_audit_probe();
	if (p == 0)
		t_skip("UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN unavailable");
	CHECK(p == 1);
	fixture_init(&f);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_AUDIT, ETERNAL_ENGINE_AUTO, 0, 0, NULL), 0);
	f.blk[1][0] = 1;
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int n0 = eternal_audit_scan(f.r, 0, d, 256);
		f.blk[5][100] = 1;
		f.blk[6][5000] = 1;
		int n = eternal_audit_scan(f.r, 0, d, 256);
		if (n0 != 0 || n != 2 || d[0].addr != (uintptr_t)f.blk[5] || d[1].addr != (uintptr_t)f.blk[6] + 4096) {
			fprintf(stderr, "child: %d then %d pages\n", n0, n);
			_exit(3);
		}
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	int n = eternal_audit_scan(f.r, 0, d, 256);
	CHECK_RC(n, 1);
	CHECK(d[0].addr == (uintptr_t)f.blk[1]);
	return T_PASS;
}
