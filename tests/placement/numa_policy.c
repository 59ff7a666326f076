/* numa_policy.c - Description: a NUMA policy given at region creation sits on the
 * sealed tier's memfd: the kernel reports it here, in a child's fresh mapping and after sealing. */
#include "place-test.h"

#include <eternal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define RESERVE (64ul << 20)
#define FILL (24ul << 20)
#define BLOCK (1ul << 20)

struct policy {
	const char *name;
	enum eternal_numa_policy pol;
	int kmode;
	const char *tag; /* in /proc/PID/numa_maps */
};

static const struct policy policies[] = {
	{ "default", ETERNAL_NUMA_DEFAULT, MPOL_DEFAULT, " default " },
	{ "interleave", ETERNAL_NUMA_INTERLEAVE, MPOL_INTERLEAVE, " interleave:" },
	{ "bind", ETERNAL_NUMA_BIND, MPOL_BIND, " bind:" },
	{ "preferred", ETERNAL_NUMA_PREFERRED, MPOL_PREFERRED, " prefer:" },
	{ "local", ETERNAL_NUMA_LOCAL, MPOL_LOCAL, " local " },
};

static const struct policy *want;
static uint64_t want_nodes;

/* Does the kernel's answer at @addr match the requested policy? */
static int policy_ok(const void *addr, const char *where)
{
	uint64_t nodes = 0;
	int mode = pt_policy_at(addr, &nodes);

	/* MPOL_LOCAL is also spelled "preferred, no node". */
	if (want->kmode == MPOL_LOCAL && mode == MPOL_PREFERRED && nodes == 0)
		mode = MPOL_LOCAL;
	if (mode != want->kmode || (want_nodes && nodes != want_nodes)) {
		fprintf(stderr, "%s: policy %d nodes %#llx, expected %d nodes %#llx\n", where, mode,
			(unsigned long long)nodes, want->kmode, (unsigned long long)want_nodes);
		return 0;
	}
	return 1;
}

/* A child maps the memfd anew: the policy belongs to the file, not to our VMA. */
static void child_maps_fresh(void *arg)
{
	int fd = *(int *)arg;
	void *m = mmap(NULL, FILL, PROT_READ, MAP_SHARED, fd, 0);

	if (m == MAP_FAILED || !policy_ok(m, "child's fresh mapping"))
		_exit(1);
	if (!strstr(pt_numa_maps(m), want->tag)) {
		fprintf(stderr, "child numa_maps: %s", pt_numa_maps(m));
		_exit(1);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = RESERVE, .cow_reserve = 8ul << 20 };
	struct eternal_stats st = { .sz = sizeof(st) };
	uint64_t allowed = pt_allowed_nodes(), per_node[64] = { 0 }, total = 0;
	int hi = pt_highest_node(allowed), n = pt_popcount(allowed), fd, pages;
	uintptr_t lo, lim;
	eternal_region *r;
	void *blk[FILL / BLOCK];

	for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++)
		if (argc > 1 && !strcmp(argv[1], policies[i].name))
			want = &policies[i];
	if (!want) {
		fprintf(stderr, "usage: numa_policy default|interleave|bind|preferred|local\n");
		return T_FAIL;
	}
	o.numa_policy = want->pol;
	/* The highest allowed node: node 0 on one node, a non-default one on several. */
	if (want->pol == ETERNAL_NUMA_BIND || want->pol == ETERNAL_NUMA_PREFERRED)
		o.numa_nodes = 1ull << hi;
	want_nodes = want->pol == ETERNAL_NUMA_INTERLEAVE ? allowed : o.numa_nodes;
	if (want->pol == ETERNAL_NUMA_LOCAL)
		CHECK(pt_pin_node(hi) == 0 || n == 1);
	printf("# policy %s, allowed nodes %#llx, target node %d\n", want->name, (unsigned long long)allowed, hi);

	CHECK_RC(eternal_region_create(&o, &r), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.numa_policy, want->pol);
	CHECK_RC(st.numa_nodes, want_nodes);
	CHECK_RC(st.page_size, sysconf(_SC_PAGESIZE));
	CHECK_RC(st.huge_status, ETERNAL_HUGE_STATUS_OFF);
	CHECK_RC(eternal_tier_bounds(r, ETERNAL_TIER_SEALED, &lo, &lim), 0);
	CHECK(policy_ok((void *)lo, "warm-up mapping"));
	if (!strstr(pt_numa_maps((void *)lo), want->tag)) {
		fprintf(stderr, "warm-up numa_maps: %s\n", pt_numa_maps((void *)lo));
		return T_FAIL;
	}

	for (size_t off = 0; off < FILL; off += BLOCK) {
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, BLOCK, 0, 1, &blk[off / BLOCK]), 0);
		t_pattern_fill(blk[off / BLOCK], BLOCK, (unsigned)(off / BLOCK));
	}
	pages = eternal_numa_pages(r, per_node, 64);
	CHECK(pages > 0);
	for (int k = 0; k < 64; k++)
		total += per_node[k];
	CHECK_RC(total, pages);
	for (int k = 0; k < 64; k++)
		if (per_node[k])
			printf("# node %d: %llu pages\n", k, (unsigned long long)per_node[k]);
	switch (want->pol) {
	case ETERNAL_NUMA_INTERLEAVE:
		/* Interleave by file offset: every node gets its share (the remainder goes to the first ones). */
		for (int k = 0; k < 64; k++) {
			if (allowed >> k & 1)
				CHECK(per_node[k] >= total / (uint64_t)n);
			else
				CHECK(per_node[k] == 0);
		}
		break;
	case ETERNAL_NUMA_BIND:
	case ETERNAL_NUMA_PREFERRED:
	case ETERNAL_NUMA_LOCAL:
		CHECK_RC(per_node[hi], total);
		break;
	case ETERNAL_NUMA_DEFAULT:
		break;
	}

	/* The memfd receives the pages, and its shared policy, at the seal. */
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	fd = eternal_tier_fd(r, ETERNAL_TIER_SEALED);
	CHECK(fd >= 0);
	CHECK_RC(t_fork_run(child_maps_fresh, &fd), 0);
	CHECK(policy_ok((void *)lo, "sealed mapping"));
	CHECK(strstr(pt_numa_maps((void *)lo), want->tag));
	for (size_t off = 0; off < FILL; off += BLOCK)
		CHECK(t_pattern_check(blk[off / BLOCK], BLOCK, (unsigned)(off / BLOCK)));
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
