/* seal.c - ending warm-up: the sealed tier's pages are published into its
 * memfd, the memfd is sealed and mapped at the same address as the mode says. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* A memfd sealed by an earlier attempt whose final mapping failed cannot take
 * new contents: give the tier a fresh one. */
static int fresh_memfd(struct eternal_region *r, struct tier *t)
{
	char name[80];
	int fd, seals = fcntl(t->fd, F_GET_SEALS);

	if (seals < 0)
		return -errno;
	if (!(seals & F_SEAL_WRITE))
		return 0;
	snprintf(name, sizeof(name), "%s:sealed", r->name);
	fd = _eternal_place_memfd(r, t, name);
	if (fd < 0)
		return fd;
	close(t->fd);
	t->fd = _eternal_fd_high(fd);
	return 0;
}

/* Copy the warm-up pages into the memfd through a temporary shared mapping,
 * with the pages allocated where the placement says. Nothing here is
 * irreversible: on failure the memfd is emptied and warm-up goes on. */
static int publish(struct eternal_region *r, struct tier *t)
{
	size_t len = t->committed;
	struct rlimit fsz;
	void *tmp;
	int rc;

	if (!len)
		return 0;
	rc = fresh_memfd(r, t);
	if (rc < 0)
		return rc;
	/* Growing a file past RLIMIT_FSIZE raises SIGXFSZ, whose default
	 * action kills the process: refuse here instead. */
	if (getrlimit(RLIMIT_FSIZE, &fsz) == 0 && fsz.rlim_cur != RLIM_INFINITY && len > fsz.rlim_cur)
		return -ENOMEM;
	if (ftruncate(t->fd, (off_t)len) < 0)
		return errno == EFBIG || errno == EINVAL ? -ENOMEM : -errno;
	tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, t->fd, 0);
	if (tmp == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	rc = _eternal_place_apply(r, tmp, len);
	/* Allocating every page first turns a full tmpfs or an empty huge
	 * page pool into -ENOMEM here rather than SIGBUS in the copy. */
	if (rc == 0) {
		rc = _eternal_place_fallocate(r, t, 0, (off_t)len);
		if (rc == -EOPNOTSUPP)
			rc = 0;
		else if (rc < 0)
			rc = -ENOMEM;
	}
	if (rc == 0)
		memcpy(tmp, (void *)t->base, len);
	munmap(tmp, len);
	if (rc == 0)
		return 0;
fail:
	if (ftruncate(t->fd, 0) < 0) /* cannot fail: the memfd is not sealed */
		_eternal_log(ETERNAL_LOG_WARN, "seal: cannot empty the memfd again: %d", -errno);
	return rc;
}

static int map_final(struct tier *t, enum eternal_mode mode)
{
	int prot = mode == ETERNAL_MODE_STRICT ? PROT_READ : PROT_READ | PROT_WRITE;
	int flags = mode == ETERNAL_MODE_STRICT ? MAP_SHARED : MAP_PRIVATE | MAP_NORESERVE;

	if (!t->committed)
		return 0;
	if (mmap((void *)t->base, t->committed, prot, flags | MAP_FIXED, t->fd, 0) == MAP_FAILED)
		return -errno;
	return 0;
}

/* After a failed MAP_FIXED, are the warm-up pages still mapped? The kernel
 * may or may not have unmapped the old range before failing. */
static bool still_mapped(const struct tier *t)
{
	return !t->committed || madvise((void *)t->base, t->committed, MADV_NORMAL) == 0;
}

int eternal_seal(eternal_region *r, enum eternal_mode mode, const struct eternal_trap_opts *topts)
{
	struct tier *t;
	int rc;

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
	/* Everything that can fail for want of a kernel feature or memory is
	 * tried first, while the region can still go on warming up. */
	if (mode != ETERNAL_MODE_OFF) {
		rc = _eternal_trap_prepare(r, mode, topts);
		if (rc < 0)
			goto out;
	}
	rc = publish(r, t);
	if (rc < 0)
		goto abort;
	if (fcntl(t->fd, F_ADD_SEALS, SEALS) < 0) {
		/* EBUSY: someone holds a writable shared mapping of the memfd
		 * (e.g. through /proc/PID/map_files); warm-up goes on. */
		rc = -errno;
		if (ftruncate(t->fd, 0) < 0)
			_eternal_log(ETERNAL_LOG_WARN, "seal: cannot empty the memfd again: %d", -errno);
		goto abort;
	}
	/* From here the memfd holds the tier for good. Replacing the private
	 * warm-up pages by the memfd's is one MAP_FIXED mmap. */
	rc = map_final(t, mode);
	if (rc < 0) {
		if (still_mapped(t))
			goto abort; /* warm-up pages intact: a retry takes a new memfd */
		/* They are gone: the sealed memfd is the only copy. Map it
		 * read-only so the tier is fully sealed rather than torn. */
		_eternal_log(ETERNAL_LOG_ERROR, "seal: mapping the memfd failed (%d), sealing strict", rc);
		if (map_final(t, ETERNAL_MODE_STRICT) < 0)
			goto abort;
		mode = ETERNAL_MODE_STRICT;
	}
	/* The reserved rest of the tier is never used again. */
	if (t->limit > t->base + t->committed)
		mprotect((void *)(t->base + t->committed), t->limit - t->base - t->committed, PROT_NONE);
	r->mode = mode;
	atomic_store(&r->state, ETERNAL_STATE_SEALED);
	if (rc < 0)
		goto abort;
	if (mode != ETERNAL_MODE_OFF) {
		rc = _eternal_trap_arm(r);
		if (rc < 0 && mode != ETERNAL_MODE_STRICT) {
			/* Sealed, but the trap could not be armed: writes to the
			 * private mapping would go unseen, so make them fault,
			 * with strict mode's diagnostics. */
			_eternal_log(ETERNAL_LOG_ERROR, "seal: arming %s failed (%d), sealing strict",
				     eternal_mode_name(mode), rc);
			_eternal_trap_abort(r);
			if (map_final(t, ETERNAL_MODE_STRICT) == 0) {
				r->mode = ETERNAL_MODE_STRICT;
				if (_eternal_trap_prepare(r, ETERNAL_MODE_STRICT, topts) == 0 &&
				    _eternal_trap_arm(r) < 0)
					_eternal_trap_abort(r);
			}
			goto out;
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
