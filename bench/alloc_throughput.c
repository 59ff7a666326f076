/* alloc_throughput.c - allocation throughput of the eternal region against
 * glibc malloc for CPython-like object sizes, measured in the same run. */
#define _GNU_SOURCE
#include "eternal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOBJ 1000000
#define REPEATS 7

enum which { MALLOC, ETERNAL, ETERNAL_NOLOCK, NWHICH };
static const char *names[NWHICH] = { "glibc malloc", "eternal", "eternal, NOLOCK" };

static size_t sizes[NOBJ];
static void *ptrs[NOBJ];

/* Sizes seen when CPython unmarshals modules: mostly 32..128 bytes (str,
 * tuple, int, code headers), a tail to a few KiB, rare large blobs. */
static size_t draw_size(unsigned *seed)
{
	unsigned k = (unsigned)rand_r(seed) % 1000;

	if (k < 600)
		return 32 + (size_t)(rand_r(seed) % 96);
	if (k < 900)
		return 128 + (size_t)(rand_r(seed) % 384);
	if (k < 995)
		return 512 + (size_t)(rand_r(seed) % 3584);
	return 16384 + (size_t)(rand_r(seed) % 49152);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One pass: allocate every object, write its header as CPython would, and
 * free every fourth one right away (warm-up temporaries). */
static int pass(enum which w, eternal_region *r)
{
	for (size_t i = 0; i < NOBJ; i++) {
		if (w == MALLOC) {
			ptrs[i] = malloc(sizes[i]);
			if (!ptrs[i])
				return -1;
		} else if (eternal_alloc(r, ETERNAL_TIER_SEALED, sizes[i], 0, 1, &ptrs[i]) < 0) {
			return -1;
		}
		memset(ptrs[i], 0, 16);
		if ((i & 3) == 3) {
			if (w == MALLOC)
				free(ptrs[i]);
			else
				eternal_free(r, ptrs[i]);
			ptrs[i] = NULL;
		}
	}
	return 0;
}

static void release(enum which w, eternal_region *r)
{
	for (size_t i = 0; i < NOBJ; i++) {
		if (!ptrs[i])
			continue;
		if (w == MALLOC)
			free(ptrs[i]);
		else
			eternal_free(r, ptrs[i]);
	}
}

/* In a fresh child process, so that both allocators start with an empty
 * heap as an interpreter's warm-up does: times of a cold pass (every page
 * new) and of a warm pass over the memory the first one released. */
static int measure(enum which w, double out[2])
{
	int fds[2], status;
	pid_t pid;

	if (pipe(fds) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = 8ul << 30,
						 .flags = w == ETERNAL_NOLOCK ? ETERNAL_REGION_NOLOCK : 0 };
		eternal_region *r = NULL;
		double t[2], t0;

		if (w != MALLOC && eternal_region_create(&o, &r) < 0)
			_exit(1);
		for (int k = 0; k < 2; k++) {
			t0 = now();
			if (pass(w, r) < 0)
				_exit(1);
			t[k] = now() - t0;
			release(w, r);
		}
		_exit(write(fds[1], t, sizeof(t)) == sizeof(t) ? 0 : 1);
	}
	close(fds[1]);
	if (read(fds[0], out, 2 * sizeof(double)) != 2 * sizeof(double))
		out[0] = out[1] = -1;
	close(fds[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp);
	return v[n / 2];
}

int main(int argc, char **argv)
{
	double t[NWHICH][2][REPEATS], ratio[NWHICH][2][REPEATS];
	unsigned seed = 42;
	size_t total = 0;
	int json = argc > 1 && !strcmp(argv[1], "--json");

	for (size_t i = 0; i < NOBJ; i++) {
		sizes[i] = draw_size(&seed);
		total += sizes[i];
	}
	/* Alternate the allocators inside each repeat so that noise from the
	 * shared machine lands on all alike; ratios are taken per repeat. */
	for (int k = 0; k < REPEATS; k++) {
		for (int w = 0; w < NWHICH; w++) {
			double v[2];

			if (measure((enum which)w, v) < 0) {
				fprintf(stderr, "alloc_throughput: %s run failed\n", names[w]);
				return 1;
			}
			t[w][0][k] = v[0];
			t[w][1][k] = v[1];
		}
		for (int w = 0; w < NWHICH; w++)
			for (int c = 0; c < 2; c++)
				ratio[w][c][k] = t[w][c][k] / t[MALLOC][c][k];
		fprintf(stderr, "\rrepeat %d/%d", k + 1, REPEATS);
	}
	fprintf(stderr, "\n");
	if (json) {
		printf("{\"objects\": %d, \"bytes\": %zu, \"repeats\": %d", NOBJ, total, REPEATS);
		for (int w = 0; w < NWHICH; w++)
			for (int c = 0; c < 2; c++)
				printf(", \"%s%s_%s_ns\": %.1f, \"%s%s_%s_ratio\": %.3f",
				       w == MALLOC ? "malloc" : "eternal", w == ETERNAL_NOLOCK ? "_nolock" : "",
				       c ? "warm" : "cold", median(t[w][c], REPEATS) * 1e9 / NOBJ,
				       w == MALLOC ? "malloc" : "eternal", w == ETERNAL_NOLOCK ? "_nolock" : "",
				       c ? "warm" : "cold", median(ratio[w][c], REPEATS));
		printf("}\n");
		return 0;
	}
	printf("%d objects (%.0f MB), CPython-like sizes, 1 in 4 freed at once; each run in a fresh process;\n"
	       "cold = first pass over new memory, warm = second pass over released memory; medians of %d\n\n",
	       NOBJ, (double)total / 1e6, REPEATS);
	printf("| allocator | cold ns/object | cold ratio to malloc | warm ns/object | warm ratio to malloc |\n");
	printf("|---|---|---|---|---|\n");
	for (int w = 0; w < NWHICH; w++) {
		double c0 = median(t[w][0], REPEATS) * 1e9 / NOBJ, c1 = median(t[w][1], REPEATS) * 1e9 / NOBJ;
		double r0 = median(ratio[w][0], REPEATS), r1 = median(ratio[w][1], REPEATS);

		printf("| %s | %.1f | %.2f (%.2f..%.2f) | %.1f | %.2f (%.2f..%.2f) |\n", names[w], c0, r0,
		       ratio[w][0][0], ratio[w][0][REPEATS - 1], c1, r1, ratio[w][1][0], ratio[w][1][REPEATS - 1]);
	}
	return 0;
}
