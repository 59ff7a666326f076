/* fork_demo.c - the smallest picture of what libeternal is for: objects built
 * before fork, then read by workers that bump a header word the way CPython
 * bumps reference counts. In the ordinary heap every page is copied; in the
 * sealed tier the same data stays shared (immortal objects are not written). */
#define _GNU_SOURCE
#include "eternal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 4

struct obj {
	uint64_t refcnt; /* written by every reader in the heap case */
	uint64_t hash;
	char payload[48];
};

struct figures {
	long pss, priv, shared;
};

static long field_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static struct figures figures_of(pid_t pid)
{
	struct figures f = { field_kb(pid, "Pss"), field_kb(pid, "Private_Dirty"), field_kb(pid, "Shared_Dirty") };

	return f;
}

/* Fork workers that walk every object; report each process's figures. */
static void run(const char *label, struct obj **objs, size_t n, int immortal)
{
	int ready[2], go[2];
	pid_t kids[WORKERS];
	struct figures f[WORKERS + 1];

	if (pipe(ready) < 0 || pipe(go) < 0) {
		perror("pipe");
		exit(1);
	}
	for (int w = 0; w < WORKERS; w++) {
		kids[w] = fork();
		if (kids[w] == 0) {
			uint64_t sum = 0;
			char c = 'r';

			for (size_t i = 0; i < n; i++) {
				if (!immortal)
					((volatile struct obj *)objs[i])->refcnt++; /* Py_INCREF */
				sum += objs[i]->hash + (uint64_t)objs[i]->payload[0];
				if (!immortal)
					((volatile struct obj *)objs[i])->refcnt--; /* Py_DECREF */
			}
			if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
				_exit(1);
			_exit(sum == 0 ? 2 : 0);
		}
	}
	for (int w = 0; w < WORKERS; w++) {
		char c;

		if (read(ready[0], &c, 1) != 1)
			exit(1);
	}
	f[0] = figures_of(getpid());
	for (int w = 0; w < WORKERS; w++)
		f[w + 1] = figures_of(kids[w]);
	if (write(go[1], "gggg", WORKERS) != WORKERS)
		exit(1);
	for (int w = 0; w < WORKERS; w++)
		waitpid(kids[w], NULL, 0);
	close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);

	long total = 0, wpriv = 0;
	for (int i = 0; i <= WORKERS; i++) {
		total += f[i].pss;
		if (i)
			wpriv += f[i].priv;
	}
	printf("| %-28s | %13.1f | %24.1f | %23.1f |\n", label, total / 1024.0, wpriv / 1024.0 / WORKERS,
	       f[1].shared / 1024.0);
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	size_t n = (mib << 20) / sizeof(struct obj);
	struct obj **heap = calloc(n, sizeof(*heap)), **eternal = calloc(n, sizeof(*eternal));
	eternal_region *r;
	int rc;

	if (!heap || !eternal || !n) {
		fprintf(stderr, "fork_demo: bad size or out of memory\n");
		return 1;
	}
	rc = eternal_region_create(NULL, &r);
	if (rc < 0) {
		fprintf(stderr, "fork_demo: eternal_region_create: %s\n", strerror(-rc));
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		heap[i] = malloc(sizeof(struct obj));
		rc = eternal_alloc(r, ETERNAL_TIER_SEALED, sizeof(struct obj), 0, 1, (void **)&eternal[i]);
		if (!heap[i] || rc < 0) {
			fprintf(stderr, "fork_demo: allocation failed (%s)\n", strerror(rc < 0 ? -rc : ENOMEM));
			return 1;
		}
		heap[i]->refcnt = eternal[i]->refcnt = 1;
		heap[i]->hash = eternal[i]->hash = i * 0x9E3779B97F4A7C15ull;
		snprintf(heap[i]->payload, sizeof(heap[i]->payload), "object %zu", i);
		memcpy(eternal[i]->payload, heap[i]->payload, sizeof(heap[i]->payload));
	}
	rc = eternal_seal(r, ETERNAL_MODE_STRICT, NULL);
	if (rc < 0) {
		fprintf(stderr, "fork_demo: eternal_seal: %s\n", strerror(-rc));
		return 1;
	}
	printf("%zu objects of %zu bytes (%zu MiB) built before fork, in the heap and in the sealed tier;\n"
	       "%d workers read every object; heap objects get a refcount bump like CPython's.\n"
	       "Both copies exist in every process, so compare the rows, not the totals.\n\n",
	       n, sizeof(struct obj), mib, WORKERS);
	printf("| %-28s | %13s | %24s | %23s |\n", "objects live in", "total Pss MiB", "Private_Dirty/worker MiB",
	       "Shared_Dirty/worker MiB");
	printf("|------------------------------|---------------|--------------------------|-------------------------|\n");
	run("ordinary heap (refcounted)", heap, n, 0);
	run("eternal sealed tier", eternal, n, 1);
	eternal_region_close(r);
	return 0;
}
