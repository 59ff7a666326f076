/* seal.c - ending warm-up: the sealed tier's memfd gets its seals and is
 * remapped at the same address, read-only or private as the mode says. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Replace [base, limit) with an inaccessible anonymous placeholder. MAP_FIXED
 * swaps mappings atomically, so no other thread can map into the gap that a
 * plain munmap would leave (which is what MAP_FIXED_NOREPLACE would have to
 * detect after the fact). */
static int placeholder(struct tier *t)
{
	if (mmap((void *)t->base, t->limit - t->base, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
		return -errno;
	return 0;
}

static int map_final(struct tier *t, enum eternal_mode mode)
{
	int prot = mode == ETERNAL_MODE_STRICT ? PROT_READ : PROT_READ | PROT_WRITE;
	int flags = mode == ETERNAL_MODE_STRICT ? MAP_SHARED : MAP_PRIVATE;

	if (!t->committed)
		return 0;
	if (mmap((void *)t->base, t->committed, prot, flags | MAP_FIXED, t->fd, 0) == MAP_FAILED)
		return -errno;
	return 0;
}

int eternal_seal(eternal_region *r, enum eternal_mode mode, const struct eternal_trap_opts *topts)
{
	struct tier *t;
	int rc, rc2;

	rc = _eternal_check(r);
	if (rc < 0)
		return rc;
	if ((unsigned)mode > ETERNAL_MODE_AUDIT)
		return -EINVAL;
	if (topts && (topts->sz < sizeof(size_t) || topts->sz > 4096))
		return -EINVAL;

	_eternal_lock(r);
	t = &r->tier[ETERNAL_TIER_SEALED];
	if (atomic_load(&r->state) != ETERNAL_STATE_WARMUP) {
		rc = atomic_load(&r->state) == ETERNAL_STATE_CLOSED ? -EBADF : -EALREADY;
		goto out;
	}
	/* Everything that can fail for want of a kernel feature is tried
	 * first, while the region can still go on warming up. */
	rc = _eternal_place_seal_check(r, mode);
	if (rc < 0)
		goto out;
	if (mode != ETERNAL_MODE_OFF) {
		rc = _eternal_trap_prepare(r, mode, topts);
		if (rc < 0)
			goto out;
	}
	rc = placeholder(t);
	if (rc < 0)
		goto abort;
	if (fcntl(t->fd, F_ADD_SEALS, SEALS) < 0) {
		/* EBUSY: someone else holds a writable shared mapping (e.g.
		 * through /proc/PID/map_files or a passed fd). Put ours back. */
		rc = -errno;
		rc2 = mmap((void *)t->base, t->limit - t->base, PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_FIXED, t->fd, 0) == MAP_FAILED ? -errno : 0;
		if (rc2 < 0)
			_eternal_log(ETERNAL_LOG_ERROR, "seal: cannot restore the warm-up mapping: %d", rc2);
		goto abort;
	}
	rc = map_final(t, mode);
	if (rc < 0 && mode != ETERNAL_MODE_STRICT) {
		/* The seals cannot be taken back: fall back to the read-only
		 * mapping, so the tier is fully sealed rather than torn. */
		_eternal_log(ETERNAL_LOG_ERROR, "seal: private mapping failed (%d), sealing strict", rc);
		if (map_final(t, ETERNAL_MODE_STRICT) == 0)
			mode = ETERNAL_MODE_STRICT;
	}
	r->mode = mode;
	atomic_store(&r->state, ETERNAL_STATE_SEALED);
	if (rc < 0)
		goto abort;
	if (mode != ETERNAL_MODE_OFF) {
		rc = _eternal_trap_arm(r);
		if (rc < 0 && mode != ETERNAL_MODE_STRICT) {
			/* Sealed, but the trap could not be armed: writes to the
			 * private mapping would go unseen, so make them fault. */
			_eternal_log(ETERNAL_LOG_ERROR, "seal: arming %s failed (%d), sealing strict",
				     eternal_mode_name(mode), rc);
			if (map_final(t, ETERNAL_MODE_STRICT) == 0)
				r->mode = ETERNAL_MODE_STRICT;
			goto abort;
		}
		rc = 0;
	}
	goto out;
abort:
	if (mode != ETERNAL_MODE_OFF)
		_eternal_trap_abort(r);
out:
	_eternal_unlock(r);
	return rc;
}
