/* replica.c - Description: after a strict seal, per-node replicas of the sealed tier map at
 * the same address in a worker: same bytes, same pointers, pages on the worker's node, still read-only. */
#include "place-test.h"

#include <eternal.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#define NBLK 128
#define BLK (64ul << 10)

struct node {
	struct node *next;
	unsigned seq;
};

static eternal_region *r;
static void *blk[NBLK];
static struct node *head;
static uintptr_t lo, lim;
static int target; /* node of the worker being checked */

static int contents_ok(void)
{
	unsigned n = 0;

	for (int i = 0; i < NBLK; i++)
		if (!t_pattern_check(blk[i], BLK, (unsigned)i))
			return 0;
	/* Pointers between blocks stay valid: the replica sits at the same address. */
	for (struct node *p = head; p; p = p->next, n++)
		if (p->seq != 999 - n)
			return 0;
	return n == 1000;
}

static void writer(void *arg)
{
	(void)arg;
	signal(SIGSEGV, SIG_DFL); /* die of it, even under a sanitizer's handler */
	*(volatile char *)blk[0] = 1; /* must be SIGSEGV */
}

static void worker(void *arg)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	uint64_t per_node[64] = { 0 };
	int rc, pages, status;

	(void)arg;
	if (pt_pin_node(target) < 0 && pt_popcount(pt_allowed_nodes()) > 1)
		_exit(2);
	rc = eternal_replica_attach(r, -1);
	if (rc != target) {
		fprintf(stderr, "attach returned %d, expected node %d\n", rc, target);
		_exit(3);
	}
	if (!contents_ok())
		_exit(4);
	pages = eternal_numa_pages(r, per_node, 64);
	if (pages <= 0 || per_node[target] != (uint64_t)pages) {
		fprintf(stderr, "replica pages: %d, on node %d: %llu\n", pages, target,
			(unsigned long long)per_node[target]);
		_exit(5);
	}
	if (!strstr(pt_numa_maps((void *)lo), ":replica")) {
		fprintf(stderr, "numa_maps: %s", pt_numa_maps((void *)lo));
		_exit(6);
	}
	if (eternal_stats_get(r, &st) < 0 || st.replica_node != target)
		_exit(7);
	status = t_fork_run(writer, NULL);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV) {
		fprintf(stderr, "write into the replica: status %#x\n", status);
		_exit(8);
	}
	_exit(0);
}

int main(void)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = 64ul << 20, .cow_reserve = 8ul << 20,
					 .numa_policy = ETERNAL_NUMA_INTERLEAVE };
	struct eternal_stats st = { .sz = sizeof(st) };
	uint64_t allowed = pt_allowed_nodes();
	int n = pt_popcount(allowed), status;
	struct timespec t0, t1;
	eternal_region *r2;

	target = pt_highest_node(allowed);
	CHECK_RC(eternal_region_create(&o, &r), 0);
	for (int i = 0; i < NBLK; i++) {
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, BLK, 0, 0, &blk[i]), 0);
		t_pattern_fill(blk[i], BLK, (unsigned)i);
	}
	for (unsigned i = 0; i < 1000; i++) {
		struct node *p;

		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, sizeof(*p), 0, 0, (void **)&p), 0);
		p->seq = i;
		p->next = head;
		head = p;
	}
	CHECK_RC(eternal_tier_bounds(r, ETERNAL_TIER_SEALED, &lo, &lim), 0);
	CHECK_RC(eternal_replicas_build(r, 0), -EOPNOTSUPP); /* not sealed yet */
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK_RC(eternal_replica_attach(r, target), -EOPNOTSUPP); /* none built */
	if (!(allowed >> 63 & 1))
		CHECK_RC(eternal_replicas_build(r, 1ull << 63), -EINVAL);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_RC(eternal_replicas_build(r, 0), n);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK_RC(eternal_replicas_build(r, 0), -EALREADY);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.replicas, n);
	CHECK_RC(st.replica_bytes, (uint64_t)n * st.tier[ETERNAL_TIER_SEALED].committed);
	CHECK_RC(st.replica_node, -1);
	printf("# %d replica(s) of %llu KiB built in %.2f ms\n", n,
	       (unsigned long long)st.tier[ETERNAL_TIER_SEALED].committed >> 10,
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	if (target < 63 && !(allowed >> (target + 1) & 1))
		CHECK_RC(eternal_replica_attach(r, target + 1), -ENOENT);

	/* One worker per node, each pinned there, each reading its own node's copy. */
	for (target = 0; target < 64; target++) {
		if (!(allowed >> target & 1))
			continue;
		status = t_fork_run(worker, NULL);
		if (status != 0)
			fprintf(stderr, "worker on node %d: status %#x\n", target, status);
		CHECK_RC(status, 0);
	}
	target = pt_highest_node(allowed);
	/* The parent still maps the original. */
	CHECK(strstr(pt_numa_maps((void *)lo), ":sealed"));
	CHECK(contents_ok());
	CHECK_RC(eternal_region_close(r), 0);

	/* Trap mode arms its own mapping: no replica may replace it. */
	o.numa_policy = ETERNAL_NUMA_DEFAULT;
	CHECK_RC(eternal_region_create(&o, &r2), 0);
	CHECK_RC(eternal_alloc(r2, ETERNAL_TIER_SEALED, BLK, 0, 0, &blk[0]), 0);
	struct eternal_trap_opts to = { .sz = sizeof(to), .engine = ETERNAL_ENGINE_MPROTECT };
	CHECK_RC(eternal_seal(r2, ETERNAL_MODE_TRAP, &to), 0);
	CHECK_RC(eternal_replicas_build(r2, 0), -EOPNOTSUPP);
	CHECK_RC(eternal_region_close(r2), 0);
	return T_PASS;
}
