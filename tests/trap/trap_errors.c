/* Description: bad input and missing features: trap calls on an unsealed
 * region, a second seal, audit calls in trap mode, bad options, and an
 * explicitly requested engine that is missing (ETERNAL_TRAP_DISABLE) fails
 * loudly with the region still warming up, while auto falls back. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <stdlib.h>

static char logged[512];
static void on_log(enum eternal_log_level lvl, const char *msg, void *arg)
{
	(void)arg;
	if (lvl == ETERNAL_LOG_ERROR)
		snprintf(logged, sizeof(logged), "%s", msg);
}

int main(void)
{
	struct fixture f;
	struct eternal_trap_event ev[4];
	struct eternal_dirty_page d[4];
	void *p;

	setenv("ETERNAL_TRAP_DISABLE", "precise,audit", 1);
	eternal_set_log(on_log, NULL);
	fixture_init(&f);
	/* not sealed yet */
	CHECK_RC(eternal_trap_read(f.r, ev, 4), -ENOTSUP);
	CHECK_RC(eternal_audit_scan(f.r, 0, d, 4), -ENOTSUP);
	CHECK_RC(eternal_trap_read(f.r, NULL, 4), -EINVAL);
	CHECK_RC(eternal_trap_read(NULL, ev, 4), -EINVAL);
	CHECK_RC(eternal_trap_probe((enum eternal_trap_engine)9), -EINVAL);

	/* bad options leave the region warming up */
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, (enum eternal_trap_engine)7, 0, 0, NULL), -EINVAL);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, ETERNAL_ENGINE_AUTO, 1u << 20, 0, NULL), -EINVAL);

	/* an engine that is missing: loud failure, nothing changed */
	CHECK_RC(eternal_trap_probe(ETERNAL_ENGINE_PRECISE), 0);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, ETERNAL_ENGINE_PRECISE, 0, 0, NULL), -EOPNOTSUPP);
	CHECK(strstr(logged, "precise") != NULL);
	CHECK_RC(eternal_audit_probe(), 0);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_AUDIT, ETERNAL_ENGINE_AUTO, 0, 0, NULL), -EOPNOTSUPP);
	CHECK(get_stats(f.r).state == ETERNAL_STATE_WARMUP);
	CHECK_RC(eternal_alloc(f.r, ETERNAL_TIER_SEALED, 64, 0, 1, &p), 0);
	f.blk[0][0] = 5; /* still plain writable memory */

	/* auto picks the next engine that works */
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, ETERNAL_ENGINE_AUTO, 0, 0, NULL), 0);
	enum eternal_trap_engine got = get_stats(f.r).engine;
	CHECK(got == (eternal_trap_probe(ETERNAL_ENGINE_THREAD) == 1 ? ETERNAL_ENGINE_THREAD : ETERNAL_ENGINE_MPROTECT));
	/* trap started twice */
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, ETERNAL_ENGINE_AUTO, 0, 0, NULL), -EALREADY);
	CHECK_RC(eternal_audit_scan(f.r, 0, d, 4), -ENOTSUP);
	writer(f.blk[0] + 1, 1);
	CHECK_RC(eternal_trap_read(f.r, ev, 4), 1);
	CHECK_RC(eternal_trap_read(f.r, ev, 0), 0);
	/* closed */
	CHECK_RC(eternal_region_close(f.r), 0);
	CHECK_RC(eternal_trap_read(f.r, ev, 4), -EBADF);
	CHECK_RC(eternal_audit_scan(f.r, 0, d, 4), -EBADF);
	return T_PASS;
}
