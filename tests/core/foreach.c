/* Description: eternal_block_foreach visits exactly the live blocks of a
 * tier, once each, in address order, and stops when the callback says so. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <stdint.h>
#include <stdlib.h>

#define N 3000

struct walk { uintptr_t last; size_t count; uint64_t bytes; };

static int visit(const struct eternal_block *b, void *arg)
{
	struct walk *w = arg;

	if ((uintptr_t)b->start <= w->last)
		return -1;
	w->last = (uintptr_t)b->start;
	w->count++;
	w->bytes += b->size;
	return 0;
}

static int stop_at_ten(const struct eternal_block *b, void *arg)
{
	(void)b;
	return ++*(int *)arg == 10 ? 99 : 0;
}

int main(void)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	static void *p[N];
	struct walk w = { 0 };
	eternal_region *r;
	size_t live = 0;
	int n = 0;

	srand(7);
	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (int i = 0; i < N; i++)
		CHECK_RC(eternal_alloc(r, 0, (size_t)(rand() % 3 ? rand() % 700 + 1 : rand() % 70000 + 1), 0, 0, &p[i]), 0);
	for (int i = 0; i < N; i += 3)
		CHECK_RC(eternal_free(r, p[i]), 0);
	live = N - (N + 2) / 3;
	CHECK_RC(eternal_block_foreach(r, 0, visit, &w), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK(w.count == live);
	CHECK(w.bytes == st.tier[0].used);
	CHECK_RC(eternal_block_foreach(r, 0, stop_at_ten, &n), 99);
	CHECK(n == 10);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
