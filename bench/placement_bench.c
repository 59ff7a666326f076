/* placement_bench.c - read latency (pointer chase) and bandwidth over the sealed tier under each
 * NUMA policy, on normal and on huge pages, and from a per-node replica; all in one run, medians. */
#define _GNU_SOURCE
#include "eternal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLOT 64 /* one cache line per chase step */
#define MAXCONF 16

struct conf {
	const char *name;
	enum eternal_numa_policy pol;
	enum eternal_huge huge;
	int replica;
	/* state */
	eternal_region *r;
	char *base;
	const char *why; /* not measured: why */
	double commit_ms, replica_ms;
	uint64_t replica_bytes, page_size;
	long replica_kb; /* measured: Shmem or huge pages taken by the copies */
	char nodes[64];
	double lat[64], bw[64];
};

static size_t g_size = 128ul << 20;
static int g_reps = 7;
static uint64_t g_sink;

/* Everything is timed in this thread's CPU time (user + kernel: commits
 * and copies run in this thread's system calls and faults): on a machine
 * shared with other jobs, wall time mostly measures waiting for a CPU. */
static double cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	double t[64];

	memcpy(t, v, (size_t)n * sizeof(*t));
	qsort(t, (size_t)n, sizeof(*t), cmp_d);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A /proc/meminfo figure in kB (HugePages_* are page counts). */
static long meminfo(const char *key)
{
	char line[128];
	size_t n = strlen(key);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static uint64_t allowed_nodes(void)
{
	unsigned long mask[16] = { 0 };

	if (syscall(SYS_get_mempolicy, NULL, mask, 1024ul, NULL, 4 /* MPOL_F_MEMS_ALLOWED */) < 0)
		return 1;
	return mask[0];
}

/* One random cycle through every slot (Sattolo), so each step is a
 * dependent load to an unpredictable line, on an unpredictable page. */
static int build_chase(char *base, size_t n)
{
	uint32_t *perm = malloc(n * sizeof(*perm));

	if (!perm)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rng() % i);
		uint32_t t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < n; i++)
		*(char **)(base + (size_t)i * SLOT) = base + (size_t)perm[i] * SLOT;
	free(perm);
	return 0;
}

static int setup(struct conf *c, int node)
{
	struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = g_size + (64ul << 20),
					 .cow_reserve = 2ul << 20, .numa_policy = c->pol, .huge_pages = c->huge };
	struct eternal_stats st = { .sz = sizeof(st) };
	uint64_t per_node[64] = { 0 };
	double t0;
	void *p;
	int rc, len = 0;

	if (c->pol == ETERNAL_NUMA_BIND || c->pol == ETERNAL_NUMA_PREFERRED)
		o.numa_nodes = 1ull << node;
	rc = eternal_region_create(&o, &c->r);
	if (rc < 0) {
		c->why = "create failed";
		return rc;
	}
	eternal_stats_get(c->r, &st);
	if (c->huge && st.huge_status != ETERNAL_HUGE_STATUS_ACTIVE) {
		c->why = eternal_huge_status_name((enum eternal_huge_status)st.huge_status);
		return -ENOMEM;
	}
	t0 = cpu_ns();
	rc = eternal_alloc(c->r, ETERNAL_TIER_SEALED, g_size, 4096, 0, &p);
	c->commit_ms = (cpu_ns() - t0) / 1e6;
	if (rc < 0) {
		c->why = "allocation failed (pool too small?)";
		return rc;
	}
	c->base = p;
	if ((rc = build_chase(c->base, g_size / SLOT)) < 0 || (rc = eternal_seal(c->r, ETERNAL_MODE_STRICT, NULL)) < 0) {
		c->why = "seal failed";
		return rc;
	}
	if (c->replica) {
		long shm0 = meminfo("Shmem"), hp0 = meminfo("HugePages_Free"), hpsz = meminfo("Hugepagesize");

		t0 = cpu_ns();
		rc = eternal_replicas_build(c->r, 0);
		c->replica_ms = (cpu_ns() - t0) / 1e6;
		/* Other processes move Shmem too: a rough figure, checked against replica_bytes. */
		c->replica_kb = c->huge ? (hp0 - meminfo("HugePages_Free")) * hpsz : meminfo("Shmem") - shm0;
		if (rc < 0 || (rc = eternal_replica_attach(c->r, -1)) < 0) {
			c->why = "replica failed";
			return rc;
		}
	}
	eternal_stats_get(c->r, &st);
	c->page_size = st.page_size;
	c->replica_bytes = st.replica_bytes;
	eternal_numa_pages(c->r, per_node, 64);
	for (int k = 0; k < 64; k++)
		if (per_node[k] && len < (int)sizeof(c->nodes) - 16)
			len += snprintf(c->nodes + len, sizeof(c->nodes) - (size_t)len, "%sN%d=%llu", len ? " " : "",
					k, (unsigned long long)per_node[k]);
	return 0;
}

static double chase_ns(const struct conf *c)
{
	size_t steps = g_size / SLOT;
	char *p = c->base;
	double t0 = cpu_ns();

	for (size_t i = 0; i < steps; i++)
		p = *(char **)p;
	g_sink += (uintptr_t)p;
	return (cpu_ns() - t0) / (double)steps;
}

static double read_gbs(const struct conf *c)
{
	const uint64_t *p = (const uint64_t *)(const void *)c->base;
	size_t n = g_size / sizeof(uint64_t);
	uint64_t a = 0, b = 0, d = 0, e = 0;
	double t0 = cpu_ns();

	for (size_t i = 0; i < n; i += 4) {
		a += p[i];
		b += p[i + 1];
		d += p[i + 2];
		e += p[i + 3];
	}
	g_sink += a + b + d + e;
	return (double)g_size / (cpu_ns() - t0);
}

int main(int argc, char **argv)
{
	static struct conf confs[MAXCONF];
	const char *pols[] = { "default", "interleave", "bind", "preferred", "local" };
	uint64_t allowed = allowed_nodes();
	int node = 63 - __builtin_clzll(allowed), n = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--size") && i + 1 < argc)
			g_size = strtoul(argv[++i], NULL, 0) << 20;
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			g_reps = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: placement_bench [--size MiB] [--reps N]\n");
			return 2;
		}
	}
	if (g_reps < 1 || g_reps > 64 || g_size < (4ul << 20)) {
		fprintf(stderr, "placement_bench: --reps 1..64, --size >= 4\n");
		return 2;
	}
	for (int h = 0; h < 2; h++) {
		for (int p = 0; p < 5; p++)
			confs[n++] = (struct conf){ .name = pols[p], .pol = (enum eternal_numa_policy)p,
						    .huge = h ? ETERNAL_HUGE_TRY : ETERNAL_HUGE_OFF };
		confs[n++] = (struct conf){ .name = "replica", .pol = ETERNAL_NUMA_DEFAULT,
					    .huge = h ? ETERNAL_HUGE_TRY : ETERNAL_HUGE_OFF, .replica = 1 };
	}
	for (int i = 0; i < n; i++)
		if (setup(&confs[i], node) == 0)
			read_gbs(&confs[i]); /* maps every page before timing */
	/* Rounds over all configurations, so that load from other processes
	 * spreads over all of them instead of biasing one. */
	for (int rep = 0; rep < g_reps; rep++)
		for (int i = 0; i < n; i++) {
			if (confs[i].why)
				continue;
			confs[i].lat[rep] = chase_ns(&confs[i]);
			confs[i].bw[rep] = read_gbs(&confs[i]);
		}

	printf("Working set %zu MiB in the sealed tier (strict), %d rounds, allowed nodes %#llx, "
	       "bind/preferred node %d. Times are this thread's CPU time (user + kernel).\n\n", g_size >> 20, g_reps, (unsigned long long)allowed, node);
	printf("| pages | policy | page size | pages per node | commit ms | chase ns/load (median) | min..max | "
	       "read GB/s (median) | min..max | replica copy ms | replica MiB (stats / measured) |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < n; i++) {
		struct conf *c = &confs[i];
		double lo_l = 1e30, hi_l = 0, lo_b = 1e30, hi_b = 0;

		if (c->why) {
			printf("| %s | %s | - | - | - | n/a: %s | | | | | |\n", c->huge ? "huge" : "normal", c->name, c->why);
			continue;
		}
		for (int k = 0; k < g_reps; k++) {
			lo_l = c->lat[k] < lo_l ? c->lat[k] : lo_l;
			hi_l = c->lat[k] > hi_l ? c->lat[k] : hi_l;
			lo_b = c->bw[k] < lo_b ? c->bw[k] : lo_b;
			hi_b = c->bw[k] > hi_b ? c->bw[k] : hi_b;
		}
		printf("| %s | %s | %llu KiB | %s | %.1f | %.1f | %.1f..%.1f | %.2f | %.2f..%.2f |", c->huge ? "huge" : "normal",
		       c->name, (unsigned long long)c->page_size >> 10, c->nodes, c->commit_ms, median(c->lat, g_reps),
		       lo_l, hi_l, median(c->bw, g_reps), lo_b, hi_b);
		if (c->replica)
			printf(" %.1f | %llu / %.1f |\n", c->replica_ms, (unsigned long long)c->replica_bytes >> 20,
			       (double)c->replica_kb / 1024);
		else
			printf(" - | - |\n");
	}
	for (int i = 0; i < n; i++)
		eternal_region_close(confs[i].r);
	return g_sink == 42 ? 1 : 0; /* keeps the loads */
}
