/* placement.c - where the sealed tier's pages live: a NUMA policy set on its
 * memfd, hugetlb pages when the pool has them, and per-node sealed replicas. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <numaif.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* The kernel reads node masks as arrays of unsigned long. get_mempolicy()
 * refuses a mask shorter than the kernel's node count, so ask with 1024 bits
 * (x86-64's CONFIG_NODES_SHIFT is at most 10); the options keep 64. */
#define KMASK_BITS 1024ul
#define KMASK_LONGS (KMASK_BITS / (8 * sizeof(unsigned long)))
/* The reservation is aligned to 2 MiB (region.c): larger huge pages would
 * not line up with the tier's base. */
#define HUGE_MAX (2ul << 20)
#define SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* The memory-policy calls come from libnuma's numaif.h: plain system-call
 * wrappers that report through errno. (libnuma's higher-level numa_*
 * functions are avoided: they print warnings on stderr, which a library must
 * not do.) */
#define sys_mbind(a, l, m, mask, max, f) mbind(a, l, m, mask, max, f)
#define sys_set_mempolicy(m, mask, max) set_mempolicy(m, mask, max)
#define sys_get_mempolicy(m, mask, max, a, f) get_mempolicy(m, mask, max, a, f)
#define sys_move_pages(pid, n, pages, nodes, status, f) move_pages(pid, n, pages, nodes, status, f)

static void kmask_of(uint64_t nodes, unsigned long mask[KMASK_LONGS])
{
	memset(mask, 0, KMASK_LONGS * sizeof(unsigned long));
	memcpy(mask, &nodes, sizeof(nodes)); /* little endian, 64-bit longs */
}

/* Nodes this thread may allocate from (cpuset mems), 0..63; -errno. */
static int64_t allowed_nodes(void)
{
	unsigned long mask[KMASK_LONGS];
	uint64_t low;

	if (sys_get_mempolicy(NULL, mask, KMASK_BITS, NULL, MPOL_F_MEMS_ALLOWED) < 0)
		return errno == ENOSYS ? -EOPNOTSUPP : -errno;
	memcpy(&low, mask, sizeof(low));
	return (int64_t)(low & INT64_MAX); /* node 63 is given up to keep the sign */
}

static int current_node(void)
{
	unsigned cpu = 0, node = 0;

	if (getcpu(&cpu, &node) < 0)
		return 0;
	return (int)node;
}

const char *eternal_numa_policy_name(enum eternal_numa_policy policy)
{
	switch (policy) {
	case ETERNAL_NUMA_DEFAULT: return "default";
	case ETERNAL_NUMA_INTERLEAVE: return "interleave";
	case ETERNAL_NUMA_BIND: return "bind";
	case ETERNAL_NUMA_PREFERRED: return "preferred";
	case ETERNAL_NUMA_LOCAL: return "local";
	}
	return "unknown";
}

const char *eternal_huge_status_name(enum eternal_huge_status status)
{
	switch (status) {
	case ETERNAL_HUGE_STATUS_OFF: return "off";
	case ETERNAL_HUGE_STATUS_ACTIVE: return "active";
	case ETERNAL_HUGE_STATUS_POOL_EMPTY: return "pool-empty";
	case ETERNAL_HUGE_STATUS_UNSUPPORTED: return "unsupported";
	case ETERNAL_HUGE_STATUS_TOO_LARGE: return "too-large";
	}
	return "unknown";
}

int _eternal_place_init(struct eternal_region *r, const struct eternal_region_opts *o)
{
	struct eternal_placement *p = &r->place;
	long page = sysconf(_SC_PAGESIZE);
	int64_t allowed;

	memset(p, 0, sizeof(*p));
	for (int i = 0; i < ETERNAL_NUMA_MAX_NODES; i++)
		p->replica_fd[i] = -1;
	p->replica_node = -1;
	for (int i = 0; i < ETERNAL_NTIERS; i++)
		r->tier[i].page_size = (size_t)page;
	if ((unsigned)o->numa_policy > ETERNAL_NUMA_LOCAL || (unsigned)o->huge_pages > ETERNAL_HUGE_REQUIRE)
		return -EINVAL;
	p->policy = o->numa_policy;
	p->huge = o->huge_pages;
	switch (o->numa_policy) {
	case ETERNAL_NUMA_DEFAULT:
	case ETERNAL_NUMA_LOCAL:
		if (o->numa_nodes)
			return -EINVAL;
		p->kmode = o->numa_policy == ETERNAL_NUMA_LOCAL ? MPOL_LOCAL : MPOL_DEFAULT;
		return 0;
	case ETERNAL_NUMA_INTERLEAVE:
	case ETERNAL_NUMA_BIND:
	case ETERNAL_NUMA_PREFERRED:
		break;
	}
	/* An explicitly requested policy the kernel cannot give fails loudly. */
	allowed = allowed_nodes();
	if (allowed < 0)
		return (int)allowed;
	if (o->numa_nodes & ~(uint64_t)allowed)
		return -EINVAL;
	p->nodes = o->numa_nodes ? o->numa_nodes : (uint64_t)allowed;
	if (o->numa_policy == ETERNAL_NUMA_PREFERRED) {
		p->nodes = o->numa_nodes ? p->nodes & -p->nodes : 1ull << current_node();
		p->kmode = MPOL_PREFERRED;
	} else {
		p->kmode = o->numa_policy == ETERNAL_NUMA_BIND ? MPOL_BIND : MPOL_INTERLEAVE;
	}
	return p->nodes ? 0 : -EINVAL;
}

/* Default huge page size and free pages in its pool, from /proc/meminfo
 * (free minus reserved: reserved pages are promised to someone else). */
static int huge_pool(size_t *size, long *nfree)
{
	char line[128];
	long total_free = -1, rsvd = 0, kb = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "HugePages_Free: %ld", &total_free);
		sscanf(line, "HugePages_Rsvd: %ld", &rsvd);
		sscanf(line, "Hugepagesize: %ld kB", &kb);
	}
	fclose(f);
	if (total_free < 0 || kb <= 0)
		return -ENOENT; /* kernel without hugetlbfs */
	*size = (size_t)kb << 10;
	*nfree = total_free - rsvd;
	return 0;
}

/* The sealed tier's memfd: hugetlb when asked for and possible, else shmem.
 * Sets the tier's page size and rounds the grow step to it (ftruncate on
 * hugetlbfs takes whole huge pages only). */
int _eternal_place_memfd(struct eternal_region *r, struct tier *t, const char *name)
{
	struct eternal_placement *p = &r->place;
	const unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	size_t hsize = 0;
	long nfree = 0;
	int fd, rc;

	if (p->huge == ETERNAL_HUGE_OFF)
		goto normal;
	rc = huge_pool(&hsize, &nfree);
	if (rc < 0) {
		p->huge_status = ETERNAL_HUGE_STATUS_UNSUPPORTED;
		p->huge_errno = -rc;
	} else if (hsize > HUGE_MAX) {
		p->huge_status = ETERNAL_HUGE_STATUS_TOO_LARGE;
		p->huge_errno = EINVAL;
	} else if (nfree <= 0) {
		p->huge_status = ETERNAL_HUGE_STATUS_POOL_EMPTY;
		p->huge_errno = ENOMEM;
	} else {
		fd = memfd_create(name, flags | MFD_HUGETLB);
		if (fd >= 0) {
			p->huge_status = ETERNAL_HUGE_STATUS_ACTIVE;
			p->huge_errno = 0;
			t->page_size = hsize;
			r->grow_step = (r->grow_step + hsize - 1) / hsize * hsize;
			return fd;
		}
		p->huge_status = ETERNAL_HUGE_STATUS_UNSUPPORTED;
		p->huge_errno = errno;
	}
	if (p->huge == ETERNAL_HUGE_REQUIRE)
		return p->huge_status == ETERNAL_HUGE_STATUS_POOL_EMPTY ? -ENOMEM : -EOPNOTSUPP;
	_eternal_log(ETERNAL_LOG_INFO, "placement: huge pages %s (%s), using normal pages",
		     eternal_huge_status_name(p->huge_status), strerror(p->huge_errno));
normal:
	fd = memfd_create(name, flags);
	return fd < 0 ? -errno : fd;
}

/* Set the policy on @addr, a shared mapping of the whole sealed memfd made
 * by seal.c before the pages are allocated. On shmem this becomes the
 * memfd's shared policy, kept by the inode for every offset: the final
 * mapping and mappings in other processes obey it. hugetlbfs keeps no shared
 * policy; there growth applies it to the pages themselves (see
 * _eternal_place_fallocate). */
int _eternal_place_apply(struct eternal_region *r, void *addr, size_t len)
{
	struct eternal_placement *p = &r->place;
	unsigned long mask[KMASK_LONGS];

	if (p->kmode == MPOL_DEFAULT)
		return 0;
	kmask_of(p->nodes, mask);
	if (sys_mbind(addr, len, p->kmode, p->kmode == MPOL_LOCAL ? NULL : mask,
		      p->kmode == MPOL_LOCAL ? 0 : KMASK_BITS + 1, 0) < 0)
		return errno == ENOSYS ? -EOPNOTSUPP : -errno;
	return 0;
}

/* Allocate [off, off + len) of the memfd with this thread's policy set to
 * the region's for the duration: hugetlbfs allocates fallocate's pages by
 * the task policy, not by any mapping's, and shmem uses it where the file
 * has no shared policy. The caller's policy is put back afterwards. */
static int fallocate_on(int fd, off_t off, off_t len, int kmode, uint64_t nodes)
{
	unsigned long mask[KMASK_LONGS], saved[KMASK_LONGS];
	int saved_mode = MPOL_DEFAULT, swapped = 0, rc = 0;

	if (kmode != MPOL_DEFAULT && sys_get_mempolicy(&saved_mode, saved, KMASK_BITS, NULL, 0) == 0) {
		kmask_of(nodes, mask);
		swapped = sys_set_mempolicy(kmode, kmode == MPOL_LOCAL ? NULL : mask,
					    kmode == MPOL_LOCAL ? 0 : KMASK_BITS + 1) == 0;
	}
	if (fallocate(fd, 0, off, len) < 0)
		rc = -errno;
	if (swapped)
		sys_set_mempolicy(saved_mode, saved, KMASK_BITS + 1);
	return rc;
}

int _eternal_place_fallocate(struct eternal_region *r, struct tier *t, off_t off, off_t len)
{
	return fallocate_on(t->fd, off, len, r->place.kmode, r->place.nodes);
}

void _eternal_place_close(struct eternal_region *r)
{
	struct eternal_placement *p = &r->place;

	for (int i = 0; i < ETERNAL_NUMA_MAX_NODES; i++) {
		if (p->replica_fd[i] >= 0)
			close(p->replica_fd[i]);
		p->replica_fd[i] = -1;
	}
	p->nreplicas = 0;
}

void _eternal_place_stats(const struct eternal_region *r, struct eternal_stats *st)
{
	const struct eternal_placement *p = &r->place;

	st->numa_policy = p->policy;
	st->numa_nodes = p->nodes;
	st->page_size = r->tier[ETERNAL_TIER_SEALED].page_size;
	st->huge_status = p->huge_status;
	st->huge_errno = p->huge_errno;
	st->replica_node = p->replica_node;
	st->replicas = p->nreplicas;
	st->replica_bytes = p->replica_bytes;
}

int eternal_numa_pages(const eternal_region *r, uint64_t *per_node, size_t nnodes)
{
	const struct tier *t;
	void *pages[512];
	int status[512];
	size_t n, counted = 0;
	int rc = _eternal_check(r);

	if (rc < 0)
		return rc;
	if (!per_node && nnodes)
		return -EINVAL;
	t = &r->tier[ETERNAL_TIER_SEALED];
	n = t->committed / t->page_size;
	/* move_pages() reports only pages mapped in this process: map them
	 * first (reading maps the memfd's pages, it allocates nothing). */
	if (t->committed)
		madvise((void *)t->base, t->committed, MADV_POPULATE_READ);
	for (size_t i = 0; i < n; i += 512) {
		size_t k = n - i < 512 ? n - i : 512;

		for (size_t j = 0; j < k; j++)
			pages[j] = (void *)(t->base + (i + j) * t->page_size);
		if (sys_move_pages(0, k, pages, NULL, status, 0) < 0)
			return errno == ENOSYS ? -EOPNOTSUPP : -errno;
		for (size_t j = 0; j < k; j++) {
			if (status[j] < 0)
				continue;
			counted++;
			if ((size_t)status[j] < nnodes)
				per_node[status[j]]++;
		}
	}
	return counted > INT32_MAX ? INT32_MAX : (int)counted;
}

/* One replica: a new memfd of the tier's kind, its pages allocated on
 * @node, filled from the sealed memfd, then sealed like it. */
static int replica_make(struct eternal_region *r, const struct tier *t, int node, int *out)
{
	bool huge = r->place.huge_status == ETERNAL_HUGE_STATUS_ACTIVE;
	unsigned long mask[KMASK_LONGS];
	char name[96];
	void *src = MAP_FAILED, *dst = MAP_FAILED;
	int fd, rc = 0;

	snprintf(name, sizeof(name), "%s:replica%d", r->name, node);
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB : 0));
	if (fd < 0)
		return -errno;
	fd = _eternal_fd_high(fd);
	if (t->committed) {
		if (ftruncate(fd, (off_t)t->committed) < 0) {
			rc = -errno;
			goto out;
		}
		/* NORESERVE: the pages are allocated by fallocate below;
		 * hugetlb would otherwise reserve the range a second time. */
		dst = mmap(NULL, t->committed, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
		src = mmap(NULL, t->committed, PROT_READ, MAP_SHARED | MAP_NORESERVE, t->fd, 0);
		if (dst == MAP_FAILED || src == MAP_FAILED) {
			rc = -errno;
			goto out;
		}
		kmask_of(1ull << node, mask);
		/* Shared policy first, so that the replica keeps its node if
		 * its pages are ever reclaimed and read back. */
		if (sys_mbind(dst, t->committed, MPOL_BIND, mask, KMASK_BITS + 1, 0) < 0) {
			rc = errno == ENOSYS ? -EOPNOTSUPP : -errno;
			goto out;
		}
		rc = fallocate_on(fd, 0, (off_t)t->committed, MPOL_BIND, 1ull << node);
		if (rc < 0) {
			rc = rc == -ENOSPC ? -ENOMEM : rc;
			goto out;
		}
		madvise(dst, t->committed, MADV_POPULATE_WRITE);
		memcpy(dst, src, t->committed);
	}
out:
	if (dst != MAP_FAILED)
		munmap(dst, t->committed);
	if (src != MAP_FAILED)
		munmap(src, t->committed);
	if (rc == 0 && fcntl(fd, F_ADD_SEALS, SEALS) < 0)
		rc = -errno;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

int eternal_replicas_build(eternal_region *r, uint64_t nodes)
{
	struct eternal_placement *p;
	const struct tier *t;
	int64_t allowed;
	int rc = _eternal_check(r), n = 0;

	if (rc < 0)
		return rc;
	allowed = allowed_nodes();
	if (allowed < 0)
		return (int)allowed;
	if (!nodes)
		nodes = (uint64_t)allowed;
	if (nodes & ~(uint64_t)allowed)
		return -EINVAL;
	_eternal_lock(r);
	p = &r->place;
	t = &r->tier[ETERNAL_TIER_SEALED];
	if (atomic_load(&r->state) != ETERNAL_STATE_SEALED ||
	    (r->mode != ETERNAL_MODE_STRICT && r->mode != ETERNAL_MODE_OFF)) {
		/* Trap and audit modes arm their own mapping; a replica put
		 * over it would go unwatched. */
		rc = atomic_load(&r->state) == ETERNAL_STATE_CLOSED ? -EBADF : -EOPNOTSUPP;
		goto out;
	}
	if (p->nreplicas) {
		rc = -EALREADY;
		goto out;
	}
	for (int k = 0; k < ETERNAL_NUMA_MAX_NODES; k++) {
		if (!(nodes >> k & 1))
			continue;
		rc = replica_make(r, t, k, &p->replica_fd[k]);
		if (rc < 0) {
			_eternal_place_close(r);
			goto out;
		}
		n++;
	}
	p->nreplicas = (unsigned)n;
	p->replica_bytes = (uint64_t)n * t->committed;
	rc = n;
out:
	_eternal_unlock(r);
	return rc;
}

int eternal_replica_attach(eternal_region *r, int node)
{
	struct eternal_placement *p;
	const struct tier *t;
	int rc = _eternal_check(r), prot, flags;

	if (rc < 0)
		return rc;
	if (node < 0)
		node = current_node();
	_eternal_lock(r);
	p = &r->place;
	t = &r->tier[ETERNAL_TIER_SEALED];
	if (!p->nreplicas) {
		rc = -EOPNOTSUPP;
		goto out;
	}
	if (node >= ETERNAL_NUMA_MAX_NODES || p->replica_fd[node] < 0) {
		rc = -ENOENT;
		goto out;
	}
	/* The same view seal.c gave the original: read-only shared in strict
	 * mode, private in off mode. MAP_FIXED swaps it in one step. */
	prot = r->mode == ETERNAL_MODE_STRICT ? PROT_READ : PROT_READ | PROT_WRITE;
	flags = r->mode == ETERNAL_MODE_STRICT ? MAP_SHARED : MAP_PRIVATE;
	if (t->committed && mmap((void *)t->base, t->committed, prot, flags | MAP_FIXED,
				 p->replica_fd[node], 0) == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	p->replica_node = node;
	rc = node;
out:
	_eternal_unlock(r);
	return rc;
}
