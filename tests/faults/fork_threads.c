/* Description: fork in a multithreaded parent. Two threads allocate, fill,
 * check and free in a loop - argv[1] "cow": in the cow tier only; "both": in
 * both tiers - while the main thread forks 200 times, during warm-up and after
 * a strict seal (the sealed tier then refuses, and the threads use the cow tier). Each child finds the region
 * consistent (stats agree with a walk; the blocks it inherited resolve),
 * allocates, frees and exits 0; the parent's own view stays consistent. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NKEEP 64

static eternal_region *r;
static atomic_int stop;
static char *kept[NKEEP];

static void *churn(void *arg)
{
	int tier_mask = (int)(intptr_t)arg & 1, cow_only = (int)(intptr_t)arg >> 1;
	unsigned seed = (unsigned)(intptr_t)arg * 7919u + 1;
	void *live[32] = { 0 };

	while (!atomic_load(&stop)) {
		int i = (int)(rand_r(&seed) % 32);
		enum eternal_tier tier = cow_only ? ETERNAL_TIER_COW : (enum eternal_tier)(rand_r(&seed) & tier_mask);
		size_t size = rand_r(&seed) % 4 ? 16 + rand_r(&seed) % 2000 : 20000 + rand_r(&seed) % 100000;

		if (live[i]) {
			struct eternal_block b;
			int rc;

			CHECK_RC(eternal_block_find(r, live[i], &b), 0);
			CHECK(b.start == live[i]);
			CHECK(t_pattern_check(live[i], 16, (unsigned)i));
			rc = eternal_free(r, live[i]);
			/* A sealed-tier block outlives the seal: by contract. */
			CHECK(rc == 0 || (rc == -EROFS && b.tier == ETERNAL_TIER_SEALED));
			live[i] = NULL;
		} else {
			int rc = eternal_alloc(r, tier, size, 0, (uint8_t)i, &live[i]);

			if (rc == -EROFS) { /* sealed meanwhile */
				rc = eternal_alloc(r, ETERNAL_TIER_COW, size, 0, (uint8_t)i, &live[i]);
			}
			CHECK_RC(rc, 0);
			t_pattern_fill(live[i], 16, (unsigned)i);
		}
	}
	for (int i = 0; i < 32; i++) {
		int rc = live[i] ? eternal_free(r, live[i]) : 0;

		CHECK(rc == 0 || (rc == -EROFS && eternal_tier_of(r, live[i]) == ETERNAL_TIER_SEALED));
	}
	return NULL;
}

static int count_fn(const struct eternal_block *b, void *arg)
{
	(void)b;
	(*(uint64_t *)arg)++;
	return 0;
}

/* Stats and a walk of the tiers agree; the kept blocks are all there. */
static void consistent(void)
{
	struct eternal_stats st = { .sz = sizeof(st) };

	CHECK_RC(eternal_stats_get(r, &st), 0);
	for (int t = 0; t < ETERNAL_NTIERS; t++) {
		uint64_t n = 0;

		CHECK_RC(eternal_block_foreach(r, (enum eternal_tier)t, count_fn, &n), 0);
		CHECK_RC(n, st.tier[t].blocks);
	}
	for (int i = 0; i < NKEEP; i++) {
		struct eternal_block b;

		CHECK_RC(eternal_block_find(r, kept[i] + 5, &b), 0);
		CHECK(b.start == kept[i]);
		CHECK(t_pattern_check(kept[i], 300, (unsigned)i + 1000));
	}
}

static void child(void)
{
	void *p[50];

	alarm(20);
	consistent();
	for (int i = 0; i < 50; i++) {
		CHECK_RC(eternal_alloc(r, (enum eternal_tier)(i & 1), 64 + (size_t)i * 100, 0, 3, &p[i]) == 0 ||
			 ((i & 1) == 0 && eternal_alloc(r, ETERNAL_TIER_COW, 64, 0, 3, &p[i]) == 0), 1);
		memset(p[i], 0x5a, 64);
	}
	for (int i = 0; i < 50; i++)
		CHECK_RC(eternal_free(r, p[i]), 0);
	consistent();
	_exit(T_PASS);
}

static void fork_many(int n, const char *phase)
{
	for (int k = 0; k < n; k++) {
		int status;
		pid_t pid = fork();

		CHECK(pid >= 0);
		if (pid == 0)
			child();
		CHECK(waitpid(pid, &status, 0) == pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != T_PASS) {
			fprintf(stderr, "%s: child %d ended with status %#x\n", phase, k, status);
			exit(T_FAIL);
		}
	}
}

int main(int argc, char **argv)
{
	int cow_only = argc > 1 && !strcmp(argv[1], "cow");
	pthread_t th[2];

	alarm(100);
	CHECK_RC(eternal_region_create(NULL, &r), 0);
	for (int i = 0; i < NKEEP; i++) {
		CHECK_RC(eternal_alloc(r, (enum eternal_tier)(i & 1), 300, 0, 9, (void **)&kept[i]), 0);
		t_pattern_fill(kept[i], 300, (unsigned)i + 1000);
	}
	/* arg: bit 0 picks the tier at random (else the sealed one), bit 1 forces the cow tier */
	CHECK(pthread_create(&th[0], NULL, churn, (void *)(intptr_t)(1 | cow_only << 1)) == 0);
	CHECK(pthread_create(&th[1], NULL, churn, (void *)(intptr_t)(0 | cow_only << 1)) == 0);
	fork_many(100, "warm-up");
	/* Mode off: a churn thread may be writing a sealed-tier block it got
	 * just before the seal, which strict mode would rightly kill. */
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_OFF, NULL), 0);
	fork_many(100, "sealed");
	atomic_store(&stop, 1);
	CHECK(pthread_join(th[0], NULL) == 0);
	CHECK(pthread_join(th[1], NULL) == 0);
	consistent();
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
