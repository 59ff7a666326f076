/* huge_pages.c - Description: the sealed tier on hugetlb pages: used when the pool has pages
 * (else normal pages and the reason in stats), grows in huge pages, seals, traps; huge-pages.sh sets the pool. */
#include "place-test.h"

#include <eternal.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static long meminfo(const char *key)
{
	char line[128];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

/* 7 MiB + a small block: four huge pages, enough to tell interleave from all-on-one-node. */
#define NBIG 7

static eternal_region *r;
static void *blk[64];
static uintptr_t lo, lim;

static eternal_region *make(enum eternal_huge huge, enum eternal_numa_policy pol, int *rc)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = 64ul << 20, .cow_reserve = 8ul << 20,
					 .grow_step = 64ul << 10, .numa_policy = pol, .huge_pages = huge };
	eternal_region *x = NULL;

	*rc = eternal_region_create(&o, &x);
	return x;
}

static void writer(void *arg)
{
	(void)arg;
	signal(SIGSEGV, SIG_DFL); /* die of it, even under a sanitizer's handler */
	*(volatile char *)blk[1] = 1;
}

static void reader(void *arg)
{
	long dirty;

	(void)arg;
	for (int i = 0; i < NBIG; i++)
		if (!t_pattern_check(blk[i], 1ul << 20, (unsigned)i))
			_exit(1);
	dirty = t_smaps_range_kb(getpid(), lo, lim, "Private_Dirty");
	_exit(dirty == 0 ? 0 : 2);
}

static int active(long hp)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	uint64_t per_node[64] = { 0 }, allowed = pt_allowed_nodes();
	long free0 = meminfo("HugePages_Free");
	char tag[64];
	int rc, pages, status;

	r = make(ETERNAL_HUGE_TRY, ETERNAL_NUMA_INTERLEAVE, &rc);
	CHECK_RC(rc, 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.huge_status, ETERNAL_HUGE_STATUS_ACTIVE);
	CHECK_RC(st.page_size, hp);
	CHECK_RC(eternal_tier_bounds(r, ETERNAL_TIER_SEALED, &lo, &lim), 0);
	for (int i = 0; i < NBIG; i++) {
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 1ul << 20, 0, 0, &blk[i]), 0);
		t_pattern_fill(blk[i], 1ul << 20, (unsigned)i);
	}
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 100, 0, 0, &blk[NBIG]), 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	/* The 64 KiB grow step was rounded up: ftruncate on hugetlbfs takes whole pages. */
	CHECK(st.tier[0].committed > 0 && st.tier[0].committed % (uint64_t)hp == 0);
	/* Warm-up runs in ordinary anonymous pages; the seal publishes the
	 * tier into huge pages, allocated where the policy says. */
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK(meminfo("HugePages_Free") <= free0 - (long)(st.tier[0].committed / (uint64_t)hp));
	/* numa_maps names the page size only for a VMA with pages mapped. */
	CHECK(*(volatile char *)blk[0] == *(char *)blk[0]);
	snprintf(tag, sizeof(tag), "kernelpagesize_kB=%ld", hp >> 10);
	CHECK(strstr(pt_numa_maps((void *)lo), " huge "));
	CHECK(strstr(pt_numa_maps((void *)lo), tag));
	pages = eternal_numa_pages(r, per_node, 64);
	CHECK_RC(pages, st.tier[0].committed / (uint64_t)hp);
	for (int k = 0; k < 64; k++) {
		if (per_node[k])
			printf("# node %d: %llu huge pages\n", k, (unsigned long long)per_node[k]);
		if (allowed >> k & 1)
			CHECK(per_node[k] >= (uint64_t)pages / (uint64_t)pt_popcount(allowed));
		else
			CHECK(per_node[k] == 0);
	}
	for (int i = 0; i < NBIG; i++)
		CHECK(t_pattern_check(blk[i], 1ul << 20, (unsigned)i));
	status = t_fork_run(writer, NULL);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
	CHECK_RC(t_fork_run(reader, NULL), 0);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}

static int fallback(void)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	int rc;

	if (meminfo("HugePages_Free") - meminfo("HugePages_Rsvd") > 0)
		t_skip("the huge page pool is not empty (run through huge-pages.sh)");
	r = make(ETERNAL_HUGE_TRY, ETERNAL_NUMA_DEFAULT, &rc);
	CHECK_RC(rc, 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.huge_status, ETERNAL_HUGE_STATUS_POOL_EMPTY);
	CHECK_RC(st.huge_errno, ENOMEM);
	CHECK_RC(st.page_size, sysconf(_SC_PAGESIZE));
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 3ul << 20, 0, 0, &blk[0]), 0);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK_RC(eternal_region_close(r), 0);
	make(ETERNAL_HUGE_REQUIRE, ETERNAL_NUMA_DEFAULT, &rc);
	CHECK_RC(rc, -ENOMEM);
	return T_PASS;
}

/* More than the pool holds: the seal cannot publish the tier, answers a
 * clean -ENOMEM and warm-up goes on; never a SIGBUS. */
static int exhaust(long hp)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	long avail = meminfo("HugePages_Free") - meminfo("HugePages_Rsvd");
	int rc, n = (int)((uint64_t)avail * (uint64_t)hp >> 20) + 4;
	void *q;

	r = make(ETERNAL_HUGE_TRY, ETERNAL_NUMA_DEFAULT, &rc);
	CHECK_RC(rc, 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.huge_status, ETERNAL_HUGE_STATUS_ACTIVE);
	for (int i = 0; i < n; i++) {
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 1ul << 20, 0, 0, &blk[i % 64]), 0);
		t_pattern_fill(blk[i % 64], 1ul << 20, (unsigned)i);
	}
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), -ENOMEM);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	printf("# pool %ld pages, %d MiB allocated, committed %llu MiB\n", avail, n,
	       (unsigned long long)st.tier[0].committed >> 20);
	CHECK_RC(st.state, ETERNAL_STATE_WARMUP);
	CHECK(meminfo("HugePages_Free") - meminfo("HugePages_Rsvd") == avail);
	CHECK(t_pattern_check(blk[(n - 1) % 64], 1ul << 20, (unsigned)(n - 1)));
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 100, 0, 0, &q), 0);
	memset(q, 1, 100);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}

/* Trap mode on huge pages: each first write per page is logged and proceeds. */
static int trap(enum eternal_trap_engine engine)
{
	struct eternal_trap_opts to = { .sz = sizeof(to), .engine = engine };
	struct eternal_trap_event ev[8];
	struct eternal_stats st = { .sz = sizeof(st) };
	int rc;

	if (eternal_trap_probe(engine) != 1)
		t_skip("trap engine %s unavailable", eternal_engine_name(engine));
	r = make(ETERNAL_HUGE_TRY, ETERNAL_NUMA_DEFAULT, &rc);
	CHECK_RC(rc, 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.huge_status, ETERNAL_HUGE_STATUS_ACTIVE);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 3ul << 20, 0, 0, &blk[0]), 0);
	t_pattern_fill(blk[0], 3ul << 20, 7);
	rc = eternal_seal(r, ETERNAL_MODE_TRAP, &to);
	if (rc == -EOPNOTSUPP) {
		/* Refused up front (placement.c, until trap.c handles huge pages):
		 * the region must still be warm, and seal strict. */
		CHECK_RC(eternal_stats_get(r, &st), 0);
		CHECK_RC(st.state, ETERNAL_STATE_WARMUP);
		CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
		CHECK(t_pattern_check(blk[0], 3ul << 20, 7));
		fprintf(stderr, "trap mode refused on hugetlb pages (-EOPNOTSUPP); region stayed warm and sealed strict\n");
		return T_FAIL;
	}
	CHECK_RC(rc, 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.mode, ETERNAL_MODE_TRAP);
	((volatile char *)blk[0])[100] = 42;
	((volatile char *)blk[0])[200] = 43; /* same page: no second record */
	CHECK_RC(eternal_trap_read(r, ev, 8), 1);
	CHECK(ev[0].addr == (uint64_t)(uintptr_t)blk[0] + 100);
	CHECK(((char *)blk[0])[100] == 42 && ((char *)blk[0])[200] == 43);
	((volatile char *)blk[0])[(2ul << 20) + 5] = 44; /* the next huge page */
	CHECK_RC(eternal_trap_read(r, ev, 8), 1);
	CHECK(ev[0].addr == (uint64_t)(uintptr_t)blk[0] + (2ul << 20) + 5);
	/* The rest of the page came along with the private copy. */
	CHECK(t_pattern_check((char *)blk[0] + 4096, 4096, 7));
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}

/* A child forked during warm-up gets a private view (region.c's fork
 * handler): on hugetlb that mapping must not reserve the whole range, or it
 * fails and the child would write into its parent's pages. */
static void warmup_child(void *arg)
{
	(void)arg;
	((volatile char *)blk[0])[10] = 99;
	_exit(((char *)blk[0])[10] == 99 ? 0 : 1);
}

static int fork_warmup(void)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	int rc;

	r = make(ETERNAL_HUGE_TRY, ETERNAL_NUMA_DEFAULT, &rc);
	CHECK_RC(rc, 0);
	CHECK_RC(eternal_stats_get(r, &st), 0);
	CHECK_RC(st.huge_status, ETERNAL_HUGE_STATUS_ACTIVE);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 1ul << 20, 0, 0, &blk[0]), 0);
	t_pattern_fill(blk[0], 1ul << 20, 3);
	CHECK_RC(t_fork_run(warmup_child, NULL), 0);
	CHECK(t_pattern_check(blk[0], 1ul << 20, 3)); /* the child's write stayed in the child */
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	CHECK(t_pattern_check(blk[0], 1ul << 20, 3));
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}

/* Replicas of a hugetlb tier are hugetlb too, each on its node. */
static int replica_node;

static void replica_worker(void *arg)
{
	uint64_t per_node[64] = { 0 };
	int pages;

	(void)arg;
	if (pt_pin_node(replica_node) < 0 && pt_popcount(pt_allowed_nodes()) > 1)
		_exit(2);
	if (eternal_replica_attach(r, -1) != replica_node)
		_exit(3);
	for (int i = 0; i < NBIG; i++)
		if (!t_pattern_check(blk[i], 1ul << 20, (unsigned)i))
			_exit(4);
	pages = eternal_numa_pages(r, per_node, 64);
	if (pages <= 0 || per_node[replica_node] != (uint64_t)pages)
		_exit(5);
	if (!strstr(pt_numa_maps((void *)lo), " huge "))
		_exit(6);
	_exit(0);
}

static int replica(long hp)
{
	struct eternal_stats st = { .sz = sizeof(st) };
	uint64_t allowed = pt_allowed_nodes();
	long free0;
	int rc;

	r = make(ETERNAL_HUGE_TRY, ETERNAL_NUMA_INTERLEAVE, &rc);
	CHECK_RC(rc, 0);
	CHECK_RC(eternal_tier_bounds(r, ETERNAL_TIER_SEALED, &lo, &lim), 0);
	for (int i = 0; i < NBIG; i++) {
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 1ul << 20, 0, 0, &blk[i]), 0);
		t_pattern_fill(blk[i], 1ul << 20, (unsigned)i);
	}
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	free0 = meminfo("HugePages_Free");
	CHECK_RC(eternal_replicas_build(r, 0), pt_popcount(allowed));
	CHECK_RC(eternal_stats_get(r, &st), 0);
	/* Each replica takes as many huge pages as the tier. */
	CHECK(free0 - meminfo("HugePages_Free") >= (long)(st.replica_bytes / (uint64_t)hp));
	for (replica_node = 0; replica_node < 64; replica_node++)
		if (allowed >> replica_node & 1)
			CHECK_RC(t_fork_run(replica_worker, NULL), 0);
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}

int main(int argc, char **argv)
{
	long hp = meminfo("Hugepagesize") << 10;
	const char *m = argc > 1 ? argv[1] : "";

	if (hp <= 0)
		t_skip("kernel without hugetlbfs");
	if (!strcmp(m, "fallback"))
		return fallback();
	if (meminfo("HugePages_Free") - meminfo("HugePages_Rsvd") < 4)
		t_skip("fewer than 4 free huge pages (run through huge-pages.sh as root)");
	if (!strcmp(m, "active"))
		return active(hp);
	if (!strcmp(m, "replica"))
		return replica(hp);
	if (!strcmp(m, "fork-warmup"))
		return fork_warmup();
	if (!strcmp(m, "exhaust"))
		return exhaust(hp);
	if (!strcmp(m, "trap-precise"))
		return trap(ETERNAL_ENGINE_PRECISE);
	if (!strcmp(m, "trap-thread"))
		return trap(ETERNAL_ENGINE_THREAD);
	if (!strcmp(m, "trap-mprotect"))
		return trap(ETERNAL_ENGINE_MPROTECT);
	fprintf(stderr, "usage: huge_pages fallback|active|replica|fork-warmup|exhaust|trap-precise|trap-thread|trap-mprotect\n");
	return T_FAIL;
}
