/* Description: a child forked during warm-up, while the parent goes on
 * allocating. The parent frees a sealed-tier slot, forks, reuses the slot and
 * writes its object; then the child allocates twice from the same size class.
 * The child must get zeroed blocks of its own and stay alive (deterministic
 * form of fork_threads-both). */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	eternal_region *r;
	char *a, *b, *c, x;
	int go[2], status;
	pid_t pid;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 64, 0, 0, (void **)&a), 0);
	CHECK_RC(eternal_free(r, a), 0); /* a heads the 64-byte free list */
	CHECK(pipe(go) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CHECK(read(go[0], &x, 1) == 1); /* after the parent reused a */
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 64, 0, 0, (void **)&b), 0);
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 64, 0, 0, (void **)&c), 0);
		for (int i = 0; i < 64; i++)
			CHECK(b[i] == 0 && c[i] == 0);
		memset(b, 'b', 64);
		memset(c, 'c', 64);
		_exit(T_PASS);
	}
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 64, 0, 0, (void **)&b), 0);
	CHECK(b == a);
	memset(b, 0x41, 64); /* the parent's object, where the child's list points */
	CHECK(write(go[1], "g", 1) == 1);
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		fprintf(stderr, "child killed by signal %d\n", WTERMSIG(status));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == T_PASS);
	for (int i = 0; i < 64; i++)
		CHECK(b[i] == 0x41);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
