/* place-test.h - helpers shared by the placement tests: allowed NUMA nodes,
 * pinning to a node, and the kernel's view of a mapping's policy. */
#ifndef PLACE_TEST_H
#define PLACE_TEST_H

#define _GNU_SOURCE
#include <errno.h>
#include <linux/mempolicy.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

#define PT_MASK_BITS 1024ul

/* Nodes this process may allocate from (bits 0..63). */
static inline uint64_t pt_allowed_nodes(void)
{
	unsigned long mask[PT_MASK_BITS / 64] = { 0 };

	if (syscall(SYS_get_mempolicy, NULL, mask, PT_MASK_BITS, NULL, MPOL_F_MEMS_ALLOWED) < 0)
		t_skip("get_mempolicy(MPOL_F_MEMS_ALLOWED): %s (kernel without NUMA)", strerror(errno));
	return mask[0];
}

static inline int pt_highest_node(uint64_t mask)
{
	return 63 - __builtin_clzll(mask);
}

/* The policy the kernel applies at @addr (MPOL_F_ADDR: the VMA's, or the
 * shared policy of the file behind it); returns the mode, fills *nodes. */
static inline int pt_policy_at(const void *addr, uint64_t *nodes)
{
	unsigned long mask[PT_MASK_BITS / 64] = { 0 };
	int mode = -1;

	if (syscall(SYS_get_mempolicy, &mode, mask, PT_MASK_BITS, addr, MPOL_F_ADDR) < 0) {
		fprintf(stderr, "get_mempolicy(MPOL_F_ADDR, %p): %s\n", addr, strerror(errno));
		return -1;
	}
	*nodes = mask[0];
	return mode;
}

/* The /proc/self/numa_maps line of the VMA starting at @addr, or "" . */
static inline const char *pt_numa_maps(const void *addr)
{
	static char line[1024];
	char want[32];
	FILE *f = fopen("/proc/self/numa_maps", "re");

	line[0] = 0;
	if (!f)
		return line;
	snprintf(want, sizeof(want), "%lx ", (unsigned long)addr);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, want, strlen(want)))
			break;
		else
			line[0] = 0;
	fclose(f);
	/* A mapping without pages ends right after its policy: end every
	 * line with a blank so a tag like " local " matches either way. */
	if (line[0] && line[strlen(line) - 1] == '\n')
		line[strlen(line) - 1] = ' ';
	return line;
}

/* Pin this thread to the CPUs of @node (from sysfs); 0 or -1. */
static inline int pt_pin_node(int node)
{
	char path[96], list[512];
	cpu_set_t set;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (!fgets(list, sizeof(list), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	CPU_ZERO(&set);
	for (char *s = list; *s && *s != '\n';) {
		long a = strtol(s, &s, 10), b = a;

		if (*s == '-')
			b = strtol(s + 1, &s, 10);
		for (long c = a; c <= b; c++)
			CPU_SET((int)c, &set);
		if (*s == ',')
			s++;
		else
			break;
	}
	if (CPU_COUNT(&set) == 0)
		return -1;
	return sched_setaffinity(0, sizeof(set), &set);
}

static inline int pt_popcount(uint64_t m)
{
	return __builtin_popcountll(m);
}

#endif
