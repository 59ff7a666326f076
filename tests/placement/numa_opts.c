/* numa_opts.c - Description: placement options are checked (bad policy, nodes outside
 * the allowed set, nodes with a policy that takes none) and an older, shorter options struct gets defaults. */
#include "place-test.h"

#include <eternal.h>
#include <stddef.h>

static int create(enum eternal_numa_policy pol, uint64_t nodes, enum eternal_huge huge)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = 8ul << 20, .cow_reserve = 8ul << 20 };
	eternal_region *r = NULL;
	int rc;

	o.numa_policy = pol;
	o.numa_nodes = nodes;
	o.huge_pages = huge;
	rc = eternal_region_create(&o, &r);
	if (rc == 0)
		eternal_region_close(r);
	return rc;
}

int main(void)
{
	uint64_t allowed = pt_allowed_nodes();
	int hi = pt_highest_node(allowed);
	struct eternal_region_opts old = { .sz = offsetof(struct eternal_region_opts, numa_policy),
					   .sealed_reserve = 8ul << 20, .cow_reserve = 8ul << 20 };
	struct eternal_stats st = { .sz = sizeof(st) };
	size_t old_stats_sz = offsetof(struct eternal_stats, numa_policy);
	unsigned char buf[sizeof(struct eternal_stats) + 16] __attribute__((aligned(16)));
	eternal_region *r;

	CHECK_RC(create((enum eternal_numa_policy)5, 0, ETERNAL_HUGE_OFF), -EINVAL);
	CHECK_RC(create((enum eternal_numa_policy)-1, 0, ETERNAL_HUGE_OFF), -EINVAL);
	CHECK_RC(create(ETERNAL_NUMA_DEFAULT, 0, (enum eternal_huge)3), -EINVAL);
	CHECK_RC(create(ETERNAL_NUMA_DEFAULT, 1, ETERNAL_HUGE_OFF), -EINVAL);
	CHECK_RC(create(ETERNAL_NUMA_LOCAL, 1, ETERNAL_HUGE_OFF), -EINVAL);
	if (hi < 62)
		CHECK_RC(create(ETERNAL_NUMA_BIND, 1ull << (hi + 1), ETERNAL_HUGE_OFF), -EINVAL);
	CHECK_RC(create(ETERNAL_NUMA_INTERLEAVE, allowed | (1ull << 63), ETERNAL_HUGE_OFF), -EINVAL);
	CHECK_RC(create(ETERNAL_NUMA_BIND, 1ull << hi, ETERNAL_HUGE_OFF), 0);
	CHECK_RC(create(ETERNAL_NUMA_INTERLEAVE, 0, ETERNAL_HUGE_OFF), 0);
	CHECK_RC(create(ETERNAL_NUMA_PREFERRED, 0, ETERNAL_HUGE_OFF), 0);

	/* A caller built against the struct before placement existed. */
	CHECK_RC(eternal_region_create(&old, &r), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.numa_policy, ETERNAL_NUMA_DEFAULT);
	CHECK_RC(st.numa_nodes, 0);
	CHECK_RC(st.page_size, sysconf(_SC_PAGESIZE));
	CHECK_RC(st.replica_node, -1);
	CHECK_RC(st.replicas, 0);
	/* ...and an older stats struct: nothing written past its size. */
	memset(buf, 0xa5, sizeof(buf));
	((struct eternal_stats *)buf)->sz = old_stats_sz;
	CHECK_RC(eternal_stats_get(r, (struct eternal_stats *)buf), 0);
	for (size_t i = old_stats_sz; i < sizeof(buf); i++)
		CHECK(buf[i] == 0xa5);
	/* No replicas before sealing, none to attach. */
	CHECK_RC(eternal_replicas_build(r, 0), -EOPNOTSUPP);
	CHECK_RC(eternal_replica_attach(r, -1), -EOPNOTSUPP);
	CHECK_RC(eternal_region_close(r), 0);
	CHECK_RC(eternal_replicas_build(r, 0), -EBADF);
	CHECK_RC(eternal_numa_pages(r, NULL, 0), -EBADF);

	CHECK(!strcmp(eternal_numa_policy_name(ETERNAL_NUMA_INTERLEAVE), "interleave"));
	CHECK(!strcmp(eternal_huge_status_name(ETERNAL_HUGE_STATUS_POOL_EMPTY), "pool-empty"));
	return T_PASS;
}
