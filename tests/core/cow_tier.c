/* Description: the cow tier stays writable after sealing; a forked child that
 * writes a few of its pages copies exactly those pages, and its writes never
 * reach the parent. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE (16ul << 20)
#define WRITES 10

int main(void)
{
	eternal_region *r;
	unsigned char *p;
	int fds[2], status;
	long before, after;
	uintptr_t lo, hi;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_COW, SIZE, 4096, 0, (void **)&p), 0);
	memset(p, 1, SIZE);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK_RC(eternal_tier_bounds(r, ETERNAL_TIER_COW, &lo, &hi), 0);
	CHECK(pipe(fds) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		long v[2];

		v[0] = t_smaps_range_kb(getpid(), lo, hi, "Private_Dirty");
		for (int i = 0; i < WRITES; i++)
			p[(size_t)i * 1000 * 4096 % SIZE] = 2;
		v[1] = t_smaps_range_kb(getpid(), lo, hi, "Private_Dirty");
		_exit(write(fds[1], v, sizeof(v)) == sizeof(v) ? 0 : 1);
	}
	long v[2];
	CHECK(read(fds[0], v, sizeof(v)) == sizeof(v));
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	before = v[0];
	after = v[1];
	printf("child cow-tier Private_Dirty: %ld kB before, %ld kB after %d page writes\n", before, after, WRITES);
	CHECK(before <= 8);
	CHECK(after - before >= WRITES * 4 && after - before <= WRITES * 4 + 8);
	for (size_t i = 0; i < SIZE; i++)
		CHECK(p[i] == 1);
	/* The tier is anonymous memory: no second copy in a memfd. */
	CHECK_RC(eternal_tier_fd(r, ETERNAL_TIER_COW), -ENOENT);
	printf("parent cow-tier Rss %ld kB for %lu kB written\n", t_smaps_range_kb(getpid(), lo, hi, "Rss"), SIZE >> 10);
	CHECK(t_smaps_range_kb(getpid(), lo, hi, "Rss") <= (long)(SIZE >> 10) + 2048);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
