/* Description: four threads allocating and freeing at once in both tiers get
 * disjoint blocks whose contents stay their own. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NT 4
#define PER 20000

static eternal_region *r;

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, seed = id;
	unsigned char **mine = calloc(PER, sizeof(*mine));
	size_t *sz = calloc(PER, sizeof(*sz));
	void *ret = NULL;

	if (!mine || !sz)
		return (void *)4;

	for (int i = 0; i < PER; i++) {
		sz[i] = (size_t)(rand_r(&seed) % (i % 50 ? 300 : 30000)) + 1;
		if (eternal_alloc(r, (enum eternal_tier)(i & 1), sz[i], 0, (uint8_t)id, (void **)&mine[i]) != 0) {
			ret = (void *)1;
			goto out;
		}
		memset(mine[i], (int)id, sz[i]);
		if (i % 3 == 2 && eternal_free(r, mine[i - 1]) != 0) {
			ret = (void *)2;
			goto out;
		}
	}
	for (int i = 0; i < PER && !ret; i++) {
		if (i % 3 == 1)
			continue;
		for (size_t k = 0; k < sz[i]; k++)
			if (mine[i][k] != id)
				ret = (void *)3;
	}
out:
	free(mine);
	free(sz);
	return ret;
}

int main(void)
{
	pthread_t t[NT];

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (uintptr_t i = 0; i < NT; i++)
		CHECK(pthread_create(&t[i], NULL, worker, (void *)(i + 1)) == 0);
	for (int i = 0; i < NT; i++) {
		void *ret;

		CHECK(pthread_join(t[i], &ret) == 0);
		CHECK(ret == NULL);
	}
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
