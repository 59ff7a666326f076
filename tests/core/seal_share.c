/* Description: a parent fills 64 MiB of the sealed tier and forks 8 children
 * that read all of it: each child's Private_Dirty for the region is ~0 and
 * its Pss is ~64 MiB / 9 (read from the region's VMA in /proc/PID/smaps). */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE (64ul << 20)
#define NCHILD 8

int main(void)
{
	int go[2], done[2];
	pid_t kids[NCHILD];
	eternal_region *r;
	unsigned char *p;
	long pss[NCHILD], priv[NCHILD];

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, SIZE, 4096, 0, (void **)&p), 0);
	t_pattern_fill(p, SIZE, 9);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	/* The parent reads the sealed tier too, as a server's master does. */
	CHECK(t_pattern_check(p, SIZE, 9));
	CHECK(pipe(go) == 0 && pipe(done) == 0);
	for (int i = 0; i < NCHILD; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			char c;
			int ok = t_pattern_check(p, SIZE, 9);

			/* Report, then stay alive until the parent has read
			 * every child's smaps. */
			c = ok ? 'y' : 'n';
			if (write(done[1], &c, 1) != 1)
				_exit(3);
			if (read(go[0], &c, 1) != 1)
				_exit(4);
			_exit(ok ? 0 : 2);
		}
	}
	for (int i = 0; i < NCHILD; i++) {
		char c;

		CHECK(read(done[0], &c, 1) == 1 && c == 'y');
	}
	for (int i = 0; i < NCHILD; i++) {
		pss[i] = t_smaps_kb(kids[i], "eternal:sealed", "Pss");
		priv[i] = t_smaps_kb(kids[i], "eternal:sealed", "Private_Dirty");
	}
	long parent_pss = t_smaps_kb(getpid(), "eternal:sealed", "Pss");
	CHECK(write(go[1], "xxxxxxxx", NCHILD) == NCHILD);
	for (int i = 0; i < NCHILD; i++) {
		int status;

		waitpid(kids[i], &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	printf("region 65536 kB; parent Pss %ld kB;", parent_pss);
	for (int i = 0; i < NCHILD; i++)
		printf(" child%d Pss %ld Private_Dirty %ld;", i, pss[i], priv[i]);
	printf("\n");
	for (int i = 0; i < NCHILD; i++) {
		CHECK(priv[i] >= 0 && priv[i] <= 8);
		/* 65536 kB shared by 9 processes = 7282 kB; allow 5%. */
		CHECK(pss[i] > 7282 * 95 / 100 && pss[i] < 7282 * 105 / 100);
	}
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
