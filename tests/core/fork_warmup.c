/* Description: a child forked during warm-up gets a private view of the
 * sealed tier: its writes never reach the parent's objects. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	eternal_region *r;
	char *p;
	int status;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 4096, 0, 0, (void **)&p), 0);
	memset(p, 'a', 4096);
	pid_t pid = fork();
	if (pid == 0) {
		memset(p, 'b', 4096);
		_exit(p[0] == 'b' ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int i = 0; i < 4096; i++)
		CHECK(p[i] == 'a');
	/* The parent still owns the region and seals it normally. */
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK(p[0] == 'a');
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
