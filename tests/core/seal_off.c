/* Description: mode "off" ends warm-up with segregation only: the memfd is
 * sealed, the tier stays writable but private, so a child's writes are its
 * own and the parent's writes never reach the memfd. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	eternal_region *r;
	char *p, c;
	void *q;
	int status;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 4096, 0, 0, (void **)&p), 0);
	memset(p, 'a', 4096);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_OFF, NULL), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK(st.state == ETERNAL_STATE_SEALED && st.mode == ETERNAL_MODE_OFF);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 16, 0, 0, &q), -EROFS);
	pid_t pid = fork();
	if (pid == 0) {
		p[0] = 'b';
		_exit(p[0] == 'b' ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(p[0] == 'a');
	p[1] = 'z';
	/* The memfd itself still holds the warm-up bytes. */
	CHECK(pread(eternal_tier_fd(r, ETERNAL_TIER_SEALED), &c, 1, (off_t)(p + 1 - (char *)p)) == 1);
	{
		uintptr_t lo, hi;

		CHECK_RC(eternal_tier_bounds(r, ETERNAL_TIER_SEALED, &lo, &hi), 0);
		CHECK(pread(eternal_tier_fd(r, ETERNAL_TIER_SEALED), &c, 1, (off_t)((uintptr_t)p + 1 - lo)) == 1);
		CHECK(c == 'a');
	}
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
