/* region.c - the eternal region: one reserved address range split into two
 * tiers, each backed by a memfd, plus the side metadata kept outside it. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEFAULT_TIER_RESERVE (512ul << 20)
#define DEFAULT_GROW_STEP (2ul << 20)
/* Reservations are aligned so that each tier can later use 2 MiB pages. */
#define RESERVE_ALIGN (2ul << 20)

static eternal_log_fn log_fn;
static void *log_arg;

/* Every live region, so that fork handlers can reach them. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct eternal_region *registry;
/* Closed handles, kept so that a stale pointer reads a tombstone. */
static struct eternal_region *graveyard;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

void eternal_set_log(eternal_log_fn fn, void *arg)
{
	log_arg = arg;
	log_fn = fn;
}

void _eternal_log(enum eternal_log_level lvl, const char *fmt, ...)
{
	eternal_log_fn fn = log_fn;
	char msg[512];
	va_list ap;

	if (!fn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fn(lvl, msg, log_arg);
}

const char *eternal_version(void)
{
	return "0.1.0";
}

const char *eternal_mode_name(enum eternal_mode mode)
{
	switch (mode) {
	case ETERNAL_MODE_OFF: return "off";
	case ETERNAL_MODE_STRICT: return "strict";
	case ETERNAL_MODE_TRAP: return "trap";
	case ETERNAL_MODE_AUDIT: return "audit";
	}
	return "unknown";
}

const char *eternal_engine_name(enum eternal_trap_engine engine)
{
	switch (engine) {
	case ETERNAL_ENGINE_AUTO: return "auto";
	case ETERNAL_ENGINE_PRECISE: return "precise";
	case ETERNAL_ENGINE_THREAD: return "thread";
	case ETERNAL_ENGINE_MPROTECT: return "mprotect";
	}
	return "unknown";
}

void _eternal_lock(struct eternal_region *r)
{
	if (r->flags & ETERNAL_REGION_NOLOCK)
		return;
	while (atomic_flag_test_and_set_explicit(&r->lock, memory_order_acquire)) {
		/* Contention is rare (allocation runs under the caller's own
		 * lock in the glue), so yield rather than build a queue. */
		__builtin_ia32_pause();
		sched_yield();
	}
}

void _eternal_unlock(struct eternal_region *r)
{
	if (r->flags & ETERNAL_REGION_NOLOCK)
		return;
	atomic_flag_clear_explicit(&r->lock, memory_order_release);
}

int _eternal_check(const struct eternal_region *r)
{
	if (!r || r->magic != REGION_MAGIC)
		return -EINVAL;
	if (atomic_load_explicit(&r->state, memory_order_acquire) == ETERNAL_STATE_CLOSED)
		return -EBADF;
	return 0;
}

int _eternal_fd_high(int fd)
{
	/* Programs and test suites reason about their low descriptors (what a
	 * child inherits, closerange): keep ours out of the way. With a low
	 * RLIMIT_NOFILE the dup fails and the fd simply stays where it is. */
	int high = fd >= 0 && fd < ETERNAL_FD_FLOOR ? fcntl(fd, F_DUPFD_CLOEXEC, ETERNAL_FD_FLOOR) : -1;

	if (high < 0)
		return fd;
	close(fd);
	return high;
}

struct tier *_eternal_tier_get(const struct eternal_region *r, uintptr_t p)
{
	/* Cast away const: callers that only read use it read-only. */
	struct eternal_region *w = (struct eternal_region *)r;

	if (p - r->base >= r->limit - r->base)
		return NULL;
	if (p < r->tier[ETERNAL_TIER_SEALED].limit)
		return &w->tier[ETERNAL_TIER_SEALED];
	if (p - r->tier[ETERNAL_TIER_COW].base < r->tier[ETERNAL_TIER_COW].limit - r->tier[ETERNAL_TIER_COW].base)
		return &w->tier[ETERNAL_TIER_COW];
	return NULL; /* the spans around the cow tier belong to no tier */
}

bool eternal_contains(const eternal_region *r, const void *p)
{
	if (!r || atomic_load_explicit(&r->state, memory_order_relaxed) == ETERNAL_STATE_CLOSED)
		return false;
	return (uintptr_t)p - r->base < r->limit - r->base;
}

enum eternal_tier eternal_tier_of(const eternal_region *r, const void *p)
{
	const struct tier *t;

	if (!eternal_contains(r, p))
		return ETERNAL_TIER_NONE;
	t = _eternal_tier_get(r, (uintptr_t)p);
	return t ? t->id : ETERNAL_TIER_NONE;
}

int eternal_tier_bounds(const eternal_region *r, enum eternal_tier tier, uintptr_t *lo, uintptr_t *hi)
{
	int rc = _eternal_check(r);

	if (rc < 0)
		return rc;
	if ((unsigned)tier >= ETERNAL_NTIERS || !lo || !hi)
		return -EINVAL;
	*lo = r->tier[tier].base;
	*hi = r->tier[tier].limit;
	return 0;
}

int eternal_tier_fd(const eternal_region *r, enum eternal_tier tier)
{
	int rc = _eternal_check(r);

	if (rc < 0)
		return rc;
	if ((unsigned)tier >= ETERNAL_NTIERS)
		return -EINVAL;
	return r->tier[tier].fd >= 0 ? r->tier[tier].fd : -ENOENT;
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&registry_mu);
	for (struct eternal_region *r = registry; r; r = r->next)
		_eternal_lock(r);
}

static void fork_parent(void)
{
	for (struct eternal_region *r = registry; r; r = r->next)
		_eternal_unlock(r);
	pthread_mutex_unlock(&registry_mu);
}

static void fork_child(void)
{
	for (struct eternal_region *r = registry; r; r = r->next)
		_eternal_unlock(r);
	pthread_mutex_unlock(&registry_mu);
}

static void atfork_register(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static int check_opts(const struct eternal_region_opts *o, struct eternal_region_opts *out)
{
	long page = sysconf(_SC_PAGESIZE);

	memset(out, 0, sizeof(*out));
	if (o) {
		if (o->sz < offsetof(struct eternal_region_opts, flags) + sizeof(o->flags) ||
		    o->sz > 4096)
			return -EINVAL;
		memcpy(out, o, o->sz < sizeof(*out) ? o->sz : sizeof(*out));
	}
	if (!out->name)
		out->name = "eternal";
	if (strlen(out->name) > 40)
		return -EINVAL;
	if (!out->sealed_reserve)
		out->sealed_reserve = DEFAULT_TIER_RESERVE;
	if (!out->cow_reserve)
		out->cow_reserve = DEFAULT_TIER_RESERVE;
	if (!out->grow_step)
		out->grow_step = DEFAULT_GROW_STEP;
	if (out->grow_step % (size_t)page || out->grow_step > (1ul << 30))
		return -EINVAL;
	if (out->flags & ~ETERNAL_REGION_NOLOCK)
		return -EINVAL;
	/* Reserves are whole spans and small enough that offsets fit the
	 * span table and granule bitmaps comfortably (1 TiB per tier). */
	for (int i = 0; i < 2; i++) {
		size_t *v = i ? &out->cow_reserve : &out->sealed_reserve;

		if (*v > (1ul << 40))
			return -EINVAL;
		*v = (*v + RESERVE_ALIGN - 1) & ~(RESERVE_ALIGN - 1);
	}
	return 0;
}

static size_t tier_meta_size(size_t reserve)
{
	size_t granules = reserve >> GRANULE_SHIFT;
	size_t spans = reserve >> SPAN_SHIFT;

	return spans * sizeof(struct span_meta) + 2 * (granules / 8) + granules;
}

/* The sealed tier: private anonymous memory while warming up, so that a
 * child forked meanwhile gets a true copy-on-write snapshot, and page faults
 * cost what the ordinary heap's do. Its memfd is created now (placement picks
 * shmem or hugetlb) and receives the pages when the tier is sealed. */
static int sealed_open(struct eternal_region *r, struct tier *t)
{
	char name[80];
	int fd, rc;

	if (mmap((void *)t->base, t->limit - t->base, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
		return -errno;
	/* Warm-up pages follow the NUMA policy too; the memfd gets it when
	 * the pages are published. */
	rc = _eternal_place_apply(r, (void *)t->base, t->limit - t->base);
	if (rc < 0)
		return rc;
	snprintf(name, sizeof(name), "%s:sealed", r->name);
	fd = _eternal_place_memfd(r, t, name); /* shmem, or hugetlb if asked */
	if (fd < 0)
		return fd;
	t->fd = _eternal_fd_high(fd);
	return 0;
}

/* The cow tier: private anonymous memory. A private mapping of a memfd
 * would read every written page into the memfd first and keep both copies.
 * Anonymous VMAs cannot be named on every kernel (CONFIG_ANON_VMA_NAME), so
 * the tier is bracketed by two inaccessible pages of a memfd named
 * "<name>:cow": tools reading /proc/PID/maps find the tier between them. */
static int cow_open(struct eternal_region *r, struct tier *t)
{
	long page = sysconf(_SC_PAGESIZE);
	char name[80];
	int fd, rc = 0;

	if (mmap((void *)t->base, t->limit - t->base, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
		return -errno;
	snprintf(name, sizeof(name), "%s:cow", r->name);
	fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, page) < 0 ||
	    mmap((void *)(t->base - (uintptr_t)page), (size_t)page, PROT_NONE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
	    mmap((void *)t->limit, (size_t)page, PROT_NONE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		rc = -errno;
	close(fd);
	return rc;
}

int eternal_region_create(const struct eternal_region_opts *opts, eternal_region **out)
{
	struct eternal_region_opts o;
	struct eternal_region *r;
	size_t total, meta;
	uintptr_t raw, base;
	char *m;
	int rc;

	if (!out)
		return -EINVAL;
	rc = check_opts(opts, &o);
	if (rc < 0)
		return rc;
	pthread_once(&atfork_once, atfork_register);

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->magic = REGION_MAGIC;
	atomic_flag_clear(&r->lock);
	r->flags = o.flags;
	r->grow_step = o.grow_step;
	snprintf(r->name, sizeof(r->name), "%s", o.name);
	r->tier[0].fd = r->tier[1].fd = -1;
	rc = _eternal_place_init(r, &o);
	if (rc < 0)
		goto fail_free;

	/* sealed tier | one span | cow tier | one span: the spans around the
	 * cow tier hold its marker pages and stay out of every tier. */
	total = o.sealed_reserve + o.cow_reserve + 2 * SPAN_SIZE;
	raw = (uintptr_t)mmap(NULL, total + 2 * RESERVE_ALIGN, PROT_NONE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if ((void *)raw == MAP_FAILED) {
		rc = -ENOMEM;
		goto fail_free;
	}
	/* At least one inaccessible page stays below the sealed tier, so its
	 * warm-up mapping never merges with a neighbouring anonymous one. */
	base = (raw + (uintptr_t)sysconf(_SC_PAGESIZE) + RESERVE_ALIGN - 1) & ~(RESERVE_ALIGN - 1);
	munmap((void *)(base + total), raw + total + 2 * RESERVE_ALIGN - (base + total));
	r->map_lo = raw;
	r->base = base;
	r->limit = base + total;

	meta = tier_meta_size(o.sealed_reserve) + tier_meta_size(o.cow_reserve);
	m = mmap(NULL, meta, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) {
		rc = -ENOMEM;
		goto fail_unmap;
	}
	r->meta = m;
	r->meta_size = meta;

	for (int i = 0; i < ETERNAL_NTIERS; i++) {
		struct tier *t = &r->tier[i];
		size_t res = i ? o.cow_reserve : o.sealed_reserve;
		size_t granules = res >> GRANULE_SHIFT;

		t->id = (enum eternal_tier)i;
		t->base = i ? base + o.sealed_reserve + SPAN_SIZE : base;
		t->limit = t->base + res;
		t->large_bump = t->base;
		t->nspans = res >> SPAN_SHIFT;
		t->spans = (struct span_meta *)m;
		m += t->nspans * sizeof(struct span_meta);
		t->starts = (uint64_t *)m;
		m += granules / 8;
		t->ends = (uint64_t *)m;
		m += granules / 8;
		t->tags = (uint8_t *)m;
		m += granules;
		t->st.reserved = res;
	}
	rc = sealed_open(r, &r->tier[ETERNAL_TIER_SEALED]);
	if (rc < 0)
		goto fail_meta;
	rc = cow_open(r, &r->tier[ETERNAL_TIER_COW]);
	if (rc < 0)
		goto fail_fds;

	pthread_mutex_lock(&registry_mu);
	r->next = registry;
	registry = r;
	pthread_mutex_unlock(&registry_mu);
	*out = r;
	return 0;

fail_fds:
	close(r->tier[ETERNAL_TIER_SEALED].fd);
fail_meta:
	munmap(r->meta, r->meta_size);
fail_unmap:
	if (r->limit)
		munmap((void *)r->map_lo, r->limit - r->map_lo);
fail_free:
	free(r);
	return rc;
}

int eternal_region_close(eternal_region *r)
{
	int rc;

	if (!r)
		return 0;
	rc = _eternal_check(r);
	if (rc < 0)
		return rc;

	pthread_mutex_lock(&registry_mu);
	for (struct eternal_region **pp = &registry; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_mu);

	_eternal_lock(r);
	atomic_store(&r->state, ETERNAL_STATE_CLOSED);
	_eternal_trap_close(r);
	_eternal_place_close(r);
	munmap((void *)r->map_lo, r->limit - r->map_lo);
	munmap(r->meta, r->meta_size);
	for (int i = 0; i < ETERNAL_NTIERS; i++) {
		struct tier *t = &r->tier[i];

		if (t->fd >= 0)
			close(t->fd);
		t->fd = -1;
		free(t->holes);
		t->holes = NULL;
	}
	_eternal_unlock(r);
	/* The handle itself is kept (a tombstone of ~11 KiB) so that a later
	 * call through a stale pointer is -EBADF instead of a use after free. */
	pthread_mutex_lock(&registry_mu);
	r->next = graveyard;
	graveyard = r;
	pthread_mutex_unlock(&registry_mu);
	return 0;
}
