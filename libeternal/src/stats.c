/* stats.c - a consistent snapshot of a region's counters: bytes per tier,
 * blocks per tag, fragmentation, seal state, mode and trap counters. */
#include "internal.h"

#include <errno.h>
#include <string.h>

int eternal_stats_get(const eternal_region *r, struct eternal_stats *out)
{
	struct eternal_region *w = (struct eternal_region *)r;
	struct eternal_stats st;
	int rc = _eternal_check(r);

	if (rc < 0)
		return rc;
	if (!out || out->sz < offsetof(struct eternal_stats, tier) || out->sz > (1u << 20))
		return -EINVAL;

	memset(&st, 0, sizeof(st));
	st.sz = out->sz < sizeof(st) ? out->sz : sizeof(st);
	_eternal_lock(w);
	st.state = (enum eternal_state)atomic_load(&r->state);
	st.mode = r->mode;
	for (int i = 0; i < ETERNAL_NTIERS; i++) {
		const struct tier *t = &r->tier[i];
		struct eternal_tier_stats *ts = &st.tier[i];

		*ts = t->st;
		ts->free = ts->committed - ts->used;
		ts->holes = (t->large_bump - t->base) - ts->used; /* below the high-water mark */
		ts->fragmentation = ts->used + ts->holes ? (double)ts->holes / (double)(ts->used + ts->holes) : 0.0;
		memcpy(st.tag_blocks[i], t->tag_blocks, sizeof(t->tag_blocks));
		memcpy(st.tag_bytes[i], t->tag_bytes, sizeof(t->tag_bytes));
	}
	_eternal_trap_stats(r, &st);
	_eternal_place_stats(r, &st);
	_eternal_unlock(w);
	/* An older caller gets the prefix it knows about. */
	memcpy(out, &st, st.sz);
	return 0;
}
