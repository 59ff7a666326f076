/* region_reclaim.c - region.c compiled into the fuzzers with one extra hook:
 * closed handles stay as tombstones by design, and millions of runs would pile them up. */
#include "region.c" /* libeternal/src, through -I */

void fuzz_reclaim_tombstones(void);

void fuzz_reclaim_tombstones(void)
{
	pthread_mutex_lock(&registry_mu);
	while (graveyard) {
		struct eternal_region *r = graveyard;

		graveyard = r->next;
		free(r);
	}
	pthread_mutex_unlock(&registry_mu);
}
