/* internal.h - libeternal's private structures, grouped by the .c file that
 * defines them. Nothing here is installed; eternal.h is the contract. */
#ifndef ETERNAL_INTERNAL_H
#define ETERNAL_INTERNAL_H

#include "eternal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdarg.h>

#define ETERNAL_HIDDEN __attribute__((visibility("hidden")))

/* Granule of the allocation-start map: every block starts on one. */
#define GRANULE 16u
#define GRANULE_SHIFT 4
/* Spans: the unit in which a tier's range is handed to size classes. */
#define SPAN_SHIFT 16
#define SPAN_SIZE (1ul << SPAN_SHIFT)
/* Size classes: 16..1024 by 16, then 4 steps per power of two up to 16 KiB. */
#define SMALL_MAX 16384u
#define NCLASSES 80

#define REGION_MAGIC 0x45544552u /* "ETER" */

enum span_kind { SPAN_FREE = 0, SPAN_SMALL = 1, SPAN_LARGE = 2 };

struct span_meta {
	uint8_t kind;        /* enum span_kind */
	uint8_t cls;         /* size class (small spans) */
	uint16_t nfree;      /* free slots (small spans) */
	uint32_t bump;       /* slots handed out so far (small spans) */
};

/* A freed large block waiting for reuse (kept outside the region). */
struct hole {
	uintptr_t start;
	size_t size;
};

struct tier {
	enum eternal_tier id;
	int fd;                   /* memfd, -1 when closed */
	uintptr_t base, limit;    /* reserved range [base, limit) */
	uintptr_t committed;      /* memfd size: bytes from base */
	uintptr_t large_bump;     /* next free byte of the open large run (<= base + span_bump) */
	uintptr_t span_bump;      /* offset of the next never-used span; never moves back */
	uintptr_t dirty_end;      /* end of the highest large block ever handed out */
	size_t nspans;
	struct span_meta *spans;  /* per-span metadata, side mapping */
	uint64_t *starts;         /* one bit per granule: a live block starts here */
	uint64_t *ends;           /* one bit per granule: a large block ends here */
	uint8_t *tags;            /* one byte per granule start */
	void *freelist[NCLASSES]; /* intrusive free lists of small slots */
	uintptr_t cur_span[NCLASSES]; /* span being bump-carved per class, 0 none */
	struct hole *holes;       /* freed large blocks */
	size_t nholes, cap_holes;
	struct eternal_tier_stats st;
	uint64_t tag_blocks[256], tag_bytes[256];
	size_t page_size;         /* of the memfd's pages: huge for a hugetlb sealed tier */
};

struct eternal_trap; /* trap.c */

struct eternal_region {
	uint32_t magic;
	_Atomic int state;            /* enum eternal_state */
	enum eternal_mode mode;
	unsigned flags;
	size_t grow_step;
	atomic_flag lock;
	char name[64];
	uintptr_t base, limit;        /* both tiers and the spans between them */
	uintptr_t map_lo;             /* reservation start, a guard below base */
	size_t meta_size;             /* side metadata mapping */
	void *meta;
	struct tier tier[ETERNAL_NTIERS];
	struct eternal_trap *trap;    /* trap/audit state, NULL otherwise */
	struct eternal_region *next;  /* registry, for fork handlers */
	struct eternal_placement {    /* placement.c */
		int policy;               /* enum eternal_numa_policy applied */
		uint64_t nodes;           /* resolved node mask */
		int kmode;                /* MPOL_* given to the kernel */
		int huge;                 /* enum eternal_huge requested */
		int huge_status, huge_errno;
		int replica_fd[ETERNAL_NUMA_MAX_NODES]; /* -1: none (valid once nreplicas > 0) */
		unsigned nreplicas;
		int replica_node;         /* attached in this process, -1 none */
		uint64_t replica_bytes;
	} place;
};

/* region.c */
#define ETERNAL_FD_FLOOR 256 /* the library's long-lived fds live at or above this */
ETERNAL_HIDDEN int _eternal_fd_high(int fd);
ETERNAL_HIDDEN void _eternal_lock(struct eternal_region *r);
ETERNAL_HIDDEN void _eternal_unlock(struct eternal_region *r);
ETERNAL_HIDDEN int _eternal_check(const struct eternal_region *r);
ETERNAL_HIDDEN void _eternal_log(enum eternal_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
ETERNAL_HIDDEN struct tier *_eternal_tier_get(const struct eternal_region *r, uintptr_t p);

/* placement.c: NUMA policy and huge pages of the sealed tier. region.c calls
 * init after the options are checked, memfd instead of memfd_create, apply
 * once the tier is mapped, close when the region closes; alloc.c grows the
 * memfd through fallocate so that the pages land where the policy says. */
ETERNAL_HIDDEN int _eternal_place_init(struct eternal_region *r, const struct eternal_region_opts *o);
ETERNAL_HIDDEN int _eternal_place_memfd(struct eternal_region *r, struct tier *t, const char *name);
ETERNAL_HIDDEN int _eternal_place_apply(struct eternal_region *r, void *addr, size_t len);
ETERNAL_HIDDEN int _eternal_place_fallocate(struct eternal_region *r, struct tier *t, off_t off, off_t len);
ETERNAL_HIDDEN void _eternal_place_close(struct eternal_region *r);
ETERNAL_HIDDEN void _eternal_place_stats(const struct eternal_region *r, struct eternal_stats *st);
/* seal.c asks before anything else: -EOPNOTSUPP if @mode cannot run on the tier's pages. */

/* trap.c: the trap and audit engines. seal.c calls prepare before the
 * irreversible part of sealing (so a missing feature leaves the region
 * untouched), then arm once the sealed tier is mapped private and writable. */
ETERNAL_HIDDEN int _eternal_trap_prepare(struct eternal_region *r, enum eternal_mode mode,
					 const struct eternal_trap_opts *o);
ETERNAL_HIDDEN int _eternal_trap_arm(struct eternal_region *r);
ETERNAL_HIDDEN void _eternal_trap_abort(struct eternal_region *r); /* undo prepare */
ETERNAL_HIDDEN void _eternal_trap_close(struct eternal_region *r);
ETERNAL_HIDDEN void _eternal_trap_stats(const struct eternal_region *r, struct eternal_stats *st);
/* Arm pages a tier gained after seal (cow tier growth with ETERNAL_TRAP_COW_TIER);
 * alloc.c may call it after mapping [lo, hi). Zero when nothing is trapped. */
ETERNAL_HIDDEN int _eternal_trap_grow(struct eternal_region *r, enum eternal_tier tier, uintptr_t lo, uintptr_t hi);
#define ETERNAL_TRAP_FLAGS_ALL (ETERNAL_TRAP_BUSY_POLL | ETERNAL_TRAP_NO_REARM | ETERNAL_TRAP_COW_TIER | \
				ETERNAL_TRAP_STRICT_DESCRIBE | ETERNAL_TRAP_FP_ONLY)
/* for audit.c: pagemap fd, armed range and page size per tier; -ENOTSUP unless in audit mode */
ETERNAL_HIDDEN int _eternal_trap_audit_ctx(const struct eternal_region *r, int *pagemap_fd,
					   uintptr_t lo[ETERNAL_NTIERS], uintptr_t hi[ETERNAL_NTIERS],
					   size_t psz[ETERNAL_NTIERS]);
/* tlog.c: the JSON-lines sink; format and write are async-signal-safe */
ETERNAL_HIDDEN int _eternal_tlog_open(const char *dir, pid_t pid);
ETERNAL_HIDDEN int _eternal_tlog_format(char *buf, size_t len, const struct eternal_trap_event *ev,
					const char *engine, const char *sym, const char *const *frame_syms,
					const char *desc);
ETERNAL_HIDDEN int _eternal_tlog_write(int fd, const char *buf, size_t n);
/* symbolize.c: unwind with the binaries' CFI from registers (DWARF order) and
 * a copy of the stack top taken at the fault; return addresses into @frames */
ETERNAL_HIDDEN int _eternal_unwind(pid_t tid, const uint64_t *regs, unsigned nregs, const void *stack,
				   size_t len, uint64_t *frames, int max);
ETERNAL_HIDDEN int _eternal_tlog_strict_msg(char *buf, size_t len, const struct eternal_trap_event *ev,
					    const char *desc);

#endif
