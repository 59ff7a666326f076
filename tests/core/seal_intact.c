/* Description: data written before the seal reads back intact in the parent
 * and in forked children; the sealed tier refuses allocation and free after
 * sealing while the cow tier keeps working. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#define NB 2000

static unsigned char *blocks[NB];
static size_t sizes[NB];

static int all_intact(void)
{
	for (int i = 0; i < NB; i++)
		if (!t_pattern_check(blocks[i], sizes[i], (unsigned)i))
			return 0;
	return 1;
}

int main(void)
{
	eternal_region *r;
	void *p;
	int status;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (int i = 0; i < NB; i++) {
		sizes[i] = (size_t)(i * 37 % 20000) + 1;
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, sizes[i], 0, 0, (void **)&blocks[i]), 0);
		t_pattern_fill(blocks[i], sizes[i], (unsigned)i);
	}
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK(all_intact());
	for (int k = 0; k < 4; k++) {
		pid_t pid = fork();

		if (pid == 0) {
			void *q;

			if (!all_intact())
				_exit(2);
			if (eternal_alloc(r, ETERNAL_TIER_SEALED, 16, 0, 0, &q) != -EROFS)
				_exit(3);
			if (eternal_alloc(r, ETERNAL_TIER_COW, 16, 0, 0, &q) != 0)
				_exit(4);
			_exit(0);
		}
		waitpid(pid, &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 16, 0, 0, &p), -EROFS);
	CHECK_RC(eternal_free(r, blocks[0]), -EROFS);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_COW, 100, 0, 0, &p), 0);
	CHECK_RC(eternal_free(r, p), 0);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
