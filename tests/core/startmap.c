/* Description: the allocation-start map resolves every interior address of
 * thousands of random blocks (small and large, both tiers) to its block, and
 * freed or never-allocated space to -ENOENT. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#define N 6000

static struct { unsigned char *p; size_t size; int live; } blk[N];

static size_t rand_size(void)
{
	int k = rand() % 100;

	if (k < 80)
		return (size_t)(rand() % 512) + 1;
	if (k < 97)
		return (size_t)(rand() % 16384) + 1;
	return (size_t)(rand() % 300000) + 16385;
}

int main(void)
{
	struct eternal_block b;
	eternal_region *r;

	srand(12345);
	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (int i = 0; i < N; i++) {
		blk[i].size = rand_size();
		CHECK_RC(eternal_alloc(r, (enum eternal_tier)(i & 1), blk[i].size, (size_t)16 << (rand() % 4),
				       (uint8_t)i, (void **)&blk[i].p), 0);
		blk[i].live = 1;
		/* Free a quarter as we go so holes and reuse are exercised. */
		if (i > 10 && rand() % 4 == 0) {
			int j = rand() % i;

			if (blk[j].live) {
				CHECK_RC(eternal_free(r, blk[j].p), 0);
				blk[j].live = 0;
			}
		}
	}
	for (int i = 0; i < N; i++) {
		if (!blk[i].live)
			continue;
		for (size_t off = 0; off < blk[i].size; off += (blk[i].size > 4096 ? 997 : 1)) {
			CHECK_RC(eternal_block_find(r, blk[i].p + off, &b), 0);
			CHECK(b.start == blk[i].p);
			CHECK(b.size >= blk[i].size);
			CHECK(b.tag == (uint8_t)i);
			CHECK(b.tier == (enum eternal_tier)(i & 1));
		}
		CHECK_RC(eternal_block_find(r, blk[i].p + blk[i].size - 1, &b), 0);
		CHECK(b.start == blk[i].p);
	}
	/* A freed block's start no longer resolves (unless reused by a live one). */
	for (int i = 0; i < N; i++) {
		int rc;

		if (blk[i].live)
			continue;
		rc = eternal_block_find(r, blk[i].p, &b);
		CHECK(rc == -ENOENT || (rc == 0 && b.start != NULL));
		if (rc == 0) {
			int found = 0;

			for (int j = 0; j < N && !found; j++)
				found = blk[j].live && blk[j].p == b.start;
			CHECK(found);
		}
	}
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
