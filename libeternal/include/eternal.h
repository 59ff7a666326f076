/* eternal.h - the one public header of libeternal: a memfd-backed region for
 * objects that never change after warm-up, sealed so forked workers share it. */
#ifndef ETERNAL_H
#define ETERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ETERNAL_API __attribute__((visibility("default")))
#else
#define ETERNAL_API
#endif

#define ETERNAL_VERSION_MAJOR 0
#define ETERNAL_VERSION_MINOR 1
#define ETERNAL_VERSION_PATCH 0

/**
 * Conventions.
 * - Every fallible function returns an int: zero (or a count) for success,
 *   -errno for failure. errno itself is never the channel.
 * - Objects a function creates come back through an out-parameter.
 * - Options structs start with `size_t sz` (set it to sizeof the struct you
 *   were compiled with) so they can grow without breaking the ABI. A NULL
 *   options pointer means "all defaults".
 * - The library prints nothing. Install a log callback to hear from it.
 * - Errors common to most calls:
 *     -EINVAL  bad argument (NULL, zero size, alignment not a power of two or
 *              larger than ETERNAL_MAX_ALIGN, unknown tier, mode or flag)
 *     -EBADF   the region was closed (handles stay valid as tombstones, so a
 *              use after close is an error, never a touch of freed memory)
 *     -ENOMEM  the tier's reserved range (or the memfd) is exhausted; the
 *              region stays usable and the caller can fall back to its heap
 *     -EROFS   the sealed tier was sealed: no more allocation or free there
 *     -EALREADY sealing twice
 */

typedef struct eternal_region eternal_region;

/** Tiers: separate address ranges inside one region. */
enum eternal_tier {
	ETERNAL_TIER_NONE = -1,  /**< address is not inside the region */
	ETERNAL_TIER_SEALED = 0, /**< immutable after warm-up: sealed read-only */
	ETERNAL_TIER_COW = 1,    /**< immortal but written by its user: private */
};
#define ETERNAL_NTIERS 2

/** What sealing does to the sealed tier (chosen at seal time). */
enum eternal_mode {
	ETERNAL_MODE_OFF = 0,    /**< segregation only: tier remapped private, writes copy as usual */
	ETERNAL_MODE_STRICT = 1, /**< memfd sealed, mapped PROT_READ shared: a write is SIGSEGV */
	ETERNAL_MODE_TRAP = 2,   /**< private + write-protected: each first write per page is logged */
	ETERNAL_MODE_AUDIT = 3,  /**< private + async write-protect: written pages found by scanning */
};

/** Life cycle of a region. */
enum eternal_state {
	ETERNAL_STATE_WARMUP = 0, /**< both tiers allocate and free */
	ETERNAL_STATE_SEALED = 1, /**< sealed tier closed; cow tier keeps working */
	ETERNAL_STATE_CLOSED = 2, /**< every call returns -EBADF */
};

#define ETERNAL_ALIGN 16              /**< default (and minimum) block alignment */
#define ETERNAL_MAX_ALIGN (1u << 20)  /**< largest alignment accepted */
#define ETERNAL_TAG_NONE 0            /**< tags are caller-defined, 0..255 */

/* ------------------------------------------------------------------ */
/* Region                                                              */

/**
 * NUMA policy of the sealed tier. It is set on the memfd itself (the shared
 * policy of shmem), so every mapping in every process sees it, and the pages
 * are placed when the tier grows, before anyone reads them.
 */
enum eternal_numa_policy {
	ETERNAL_NUMA_DEFAULT = 0,    /**< no policy: the kernel's (node of the CPU that grows the tier) */
	ETERNAL_NUMA_INTERLEAVE = 1, /**< pages round-robin over numa_nodes (0: every allowed node) */
	ETERNAL_NUMA_BIND = 2,       /**< pages only from numa_nodes (0: every allowed node); when
				          those nodes are full the kernel reclaims or OOM-kills, as for
				          any bound memory */
	ETERNAL_NUMA_PREFERRED = 3,  /**< pages from the lowest node of numa_nodes (0: the creating
				          CPU's node), from others when it is full */
	ETERNAL_NUMA_LOCAL = 4,      /**< pages from the node of the CPU that grows the tier */
};
#define ETERNAL_NUMA_MAX_NODES 64

/** Huge pages (hugetlb, MFD_HUGETLB) for the sealed tier. */
enum eternal_huge {
	ETERNAL_HUGE_OFF = 0,     /**< normal pages */
	ETERNAL_HUGE_TRY = 1,     /**< hugetlb pages if the pool has free pages, else normal pages
				       (stats say why); the grow step is rounded up to the huge page.
				       Strict and off modes seal hugetlb; trap and audit refuse it
				       for now (eternal_seal -EOPNOTSUPP, region left in warm-up) */
	ETERNAL_HUGE_REQUIRE = 2, /**< hugetlb pages or eternal_region_create() fails (-ENOMEM) */
};

/** Why the sealed tier does or does not use huge pages (eternal_stats.huge_status). */
enum eternal_huge_status {
	ETERNAL_HUGE_STATUS_OFF = 0,         /**< not requested */
	ETERNAL_HUGE_STATUS_ACTIVE = 1,      /**< hugetlb pages in use */
	ETERNAL_HUGE_STATUS_POOL_EMPTY = 2,  /**< no free page in the pool (vm.nr_hugepages) */
	ETERNAL_HUGE_STATUS_UNSUPPORTED = 3, /**< kernel refused MFD_HUGETLB (no hugetlbfs, or no
					          sealing on it) */
	ETERNAL_HUGE_STATUS_TOO_LARGE = 4,   /**< default huge page larger than 2 MiB (the
					          reservation's alignment) */
};

/** Region flags. */
#define ETERNAL_REGION_NOLOCK (1u << 0) /**< caller serialises all calls (e.g. holds the GIL) */

struct eternal_region_opts {
	size_t sz;             /**< sizeof(struct eternal_region_opts) */
	const char *name;      /**< memfd name prefix (<= 40 chars); default "eternal" -> "eternal:sealed", "eternal:cow" */
	size_t sealed_reserve; /**< address space for the sealed tier; default 512 MiB */
	size_t cow_reserve;    /**< address space for the cow tier; default 512 MiB */
	size_t grow_step;      /**< memfd growth granule, a page multiple; default 2 MiB */
	unsigned flags;        /**< ETERNAL_REGION_* */
	/* Placement of the sealed tier (appended in 0.1; see "Placement" below). */
	enum eternal_numa_policy numa_policy; /**< default ETERNAL_NUMA_DEFAULT: the kernel's */
	uint64_t numa_nodes;   /**< bit K = node K (nodes 0..63); 0 means every allowed node */
	enum eternal_huge huge_pages; /**< default ETERNAL_HUGE_OFF */
};

/**
 * Reserve the address range and create both memfds.
 * Return: zero for success, -errno for failure (-EINVAL bad options,
 * -ENOMEM the address space could not be reserved, -EMFILE/-ENFILE no fd).
 */
ETERNAL_API int eternal_region_create(const struct eternal_region_opts *opts, eternal_region **out);

/**
 * Unmap the region and close its memfds. The handle stays allocated as a
 * tombstone: later calls on it return -EBADF. NULL is accepted.
 * Return: zero, or -EBADF if it was already closed.
 */
ETERNAL_API int eternal_region_close(eternal_region *r);

/** Base address and size of a tier's reserved range (for inline range checks). */
ETERNAL_API int eternal_tier_bounds(const eternal_region *r, enum eternal_tier tier,
				    uintptr_t *lo, uintptr_t *hi);

/**
 * The memfd backing a tier (owned by the region; do not close). Only the
 * sealed tier has one: the cow tier is private anonymous memory, between two
 * inaccessible marker pages of a memfd named "<name>:cow" in /proc/PID/maps.
 * Return: the fd, -ENOENT for the cow tier, -EINVAL, -EBADF.
 */
ETERNAL_API int eternal_tier_fd(const eternal_region *r, enum eternal_tier tier);

/* ------------------------------------------------------------------ */
/* Allocation                                                          */

/**
 * Allocate @size bytes in @tier, aligned to @align (0 means ETERNAL_ALIGN;
 * otherwise a power of two <= ETERNAL_MAX_ALIGN), tagged with @tag.
 * Memory comes zeroed. Small sizes use size classes, large ones a bump
 * pointer; both are recycled by eternal_free() until the tier is sealed.
 * Return: zero and *out set, or -EINVAL, -EBADF, -EROFS (sealed tier after
 * seal), -ENOMEM (tier exhausted: fall back to your own heap).
 */
ETERNAL_API int eternal_alloc(eternal_region *r, enum eternal_tier tier, size_t size,
			      size_t align, uint8_t tag, void **out);

/**
 * Free a block. Return: zero, -EFAULT if @p is not inside the region,
 * -EINVAL if it is not the start of a live block, -EROFS for the sealed tier
 * after seal, -EBADF.
 */
ETERNAL_API int eternal_free(eternal_region *r, void *p);

/** Constant time: is @p inside the region (either tier)? NULL region -> false. */
ETERNAL_API bool eternal_contains(const eternal_region *r, const void *p);

/** Constant time: which tier holds @p (ETERNAL_TIER_NONE if neither). */
ETERNAL_API enum eternal_tier eternal_tier_of(const eternal_region *r, const void *p);

/* ------------------------------------------------------------------ */
/* Allocation-start map                                                */

struct eternal_block {
	void *start;            /**< first byte of the block */
	size_t size;            /**< usable size (the size class or rounded large size) */
	enum eternal_tier tier;
	uint8_t tag;
};

/**
 * Resolve any interior address to the live block that holds it. Lock-free;
 * async-signal-safe for a tier that no longer changes (the sealed tier after
 * seal). Return: zero, -EFAULT outside the region, -ENOENT not in a live block.
 */
ETERNAL_API int eternal_block_find(const eternal_region *r, const void *p, struct eternal_block *out);

/** Set the tag of the live block starting at @start. Return 0, -EINVAL, -EROFS. */
ETERNAL_API int eternal_block_set_tag(eternal_region *r, void *start, uint8_t tag);

/**
 * Call @fn for every live block of @tier in address order; a non-zero return
 * from @fn stops the walk and is returned. Do not allocate from @fn.
 */
typedef int (*eternal_block_fn)(const struct eternal_block *b, void *arg);
ETERNAL_API int eternal_block_foreach(const eternal_region *r, enum eternal_tier tier,
				      eternal_block_fn fn, void *arg);

/* ------------------------------------------------------------------ */
/* Sealing and modes                                                   */

/** Engines that catch writes in trap mode. */
enum eternal_trap_engine {
	ETERNAL_ENGINE_AUTO = 0,     /**< best available: precise, thread, mprotect */
	ETERNAL_ENGINE_PRECISE = 1,  /**< userfaultfd WP + UFFD_FEATURE_SIGBUS, handled in the writer */
	ETERNAL_ENGINE_THREAD = 2,   /**< userfaultfd WP, a handler thread; also sees kernel writes */
	ETERNAL_ENGINE_MPROTECT = 3, /**< mprotect + SIGSEGV, where userfaultfd is refused */
};

#define ETERNAL_TRAP_MAX_FRAMES 8

/** One trapped write, as recorded (in a signal handler: plain data only). */
struct eternal_trap_event {
	uint64_t seq;         /**< per-process sequence number */
	uint64_t time_ns;     /**< CLOCK_REALTIME */
	int32_t pid, tid;
	uint64_t addr;        /**< exact faulting address */
	uint64_t offset;      /**< addr - tier base */
	int32_t tier;         /**< enum eternal_tier */
	uint8_t tag;          /**< tag of the block, 0 if none */
	uint8_t engine;       /**< enum eternal_trap_engine that caught it */
	uint8_t kernel;       /**< 1: the kernel wrote on the process's behalf; pc is the syscall's */
	uint64_t block_start; /**< 0 if the address is not in a live block */
	uint64_t block_size;
	uint64_t block_offset;
	uint64_t pc;          /**< instruction that wrote, 0 if unknown */
	uint32_t nframes;
	uint64_t frames[ETERNAL_TRAP_MAX_FRAMES]; /**< return addresses, innermost first */
};

/**
 * Turn a block + offset into names, outside any signal handler (the glue
 * names the Python type and field). Write a NUL-terminated string to @buf.
 * Return the length written or -errno; the library treats errors as "no name".
 */
typedef int (*eternal_describe_fn)(const struct eternal_trap_event *ev, char *buf, size_t len, void *arg);

/** Trap flags. */
#define ETERNAL_TRAP_BUSY_POLL (1u << 0) /**< thread engine: busy-poll instead of pinning */
#define ETERNAL_TRAP_NO_REARM  (1u << 1) /**< do not re-arm in children after fork */
#define ETERNAL_TRAP_COW_TIER  (1u << 2) /**< also trap first writes to cow-tier pages */
#define ETERNAL_TRAP_STRICT_DESCRIBE (1u << 3) /**< strict mode: call describe from the SIGSEGV
                                                handler too (only if describe is async-signal-safe) */
#define ETERNAL_TRAP_FP_ONLY (1u << 4) /**< backtraces from frame pointers only: no 2 KiB stack copy
                                        per trap for the CFI unwinder, ring slots ~2 KiB smaller */

struct eternal_trap_opts {
	size_t sz;                      /**< sizeof(struct eternal_trap_opts) */
	enum eternal_trap_engine engine;
	unsigned flags;                 /**< ETERNAL_TRAP_* */
	size_t ring_capacity;           /**< events kept in memory; default 4096 */
	const char *log_dir;            /**< JSON lines, one file per pid; NULL: ring only */
	eternal_describe_fn describe;   /**< optional, used when writing the log */
	void *describe_arg;
};

/**
 * End warm-up. The sealed tier stops allocating. Its pages, private
 * anonymous memory until now (so a child forked during warm-up gets a true
 * copy-on-write snapshot), are copied into its memfd, which gets
 * F_SEAL_WRITE|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL and is mapped over them
 * at the same address as @mode says. @topts is read in trap and audit mode
 * (NULL: defaults). Either the whole seal happens or the region stays in
 * warm-up, writable and allocating: never torn.
 * Return: zero, -EALREADY, -EBUSY (a writable shared mapping of the memfd
 * exists elsewhere), -EOPNOTSUPP or -EPERM (the mode's kernel feature is
 * missing or refused), -ENOMEM (no memory, tmpfs space or huge pages for the
 * memfd's pages), -EBADF. After any error but -EALREADY and -EBADF the region
 * is still warming up and the call can be retried.
 */
ETERNAL_API int eternal_seal(eternal_region *r, enum eternal_mode mode,
			     const struct eternal_trap_opts *topts);

/** Is @engine usable in this process? 1 yes, 0 no, -errno on probe error. Cached. */
ETERNAL_API int eternal_trap_probe(enum eternal_trap_engine engine);

/** Is audit mode (UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN) usable? 1 yes, 0 no, -errno. Cached. */
ETERNAL_API int eternal_audit_probe(void);

/**
 * Drain up to @cap trapped-write events from the in-memory ring into @buf.
 * Return: the number copied, or -errno. Dropped events are counted in stats.
 */
ETERNAL_API int eternal_trap_read(eternal_region *r, struct eternal_trap_event *buf, size_t cap);

/**
 * Resolve @pc to "symbol+0xoff (module)" using elfutils, outside signal
 * handlers. Return the length written or -errno (-ENOENT: no symbol).
 */
ETERNAL_API int eternal_symbolize(uint64_t pc, char *buf, size_t len);

/** Audit scan flags. */
#define ETERNAL_AUDIT_REPROTECT (1u << 0) /**< write-protect the reported pages again */

struct eternal_dirty_page {
	uint64_t addr;          /**< page address */
	int32_t tier;
	uint32_t blocks;        /**< live blocks overlapping the page */
};

/**
 * Audit mode: report pages written since the last scan (up to @cap).
 * Return: the number of pages reported, or -errno (-ENOTSUP if not in audit mode).
 */
ETERNAL_API int eternal_audit_scan(eternal_region *r, unsigned flags, struct eternal_dirty_page *out, size_t cap);

/* ------------------------------------------------------------------ */
/* Stats                                                               */

struct eternal_tier_stats {
	uint64_t reserved;      /**< address space */
	uint64_t committed;     /**< memfd size */
	uint64_t used;          /**< bytes in live blocks (class or rounded sizes) */
	uint64_t free;          /**< committed - used */
	uint64_t holes;         /**< free bytes below the high-water mark: freed or
				     never-carved slots, freed large blocks, gaps */
	uint64_t blocks;        /**< live blocks */
	uint64_t large_blocks;  /**< live blocks above the size classes */
	uint64_t alloc_failures;/**< allocations refused with -ENOMEM */
	double fragmentation;   /**< holes / (used + holes), 0..1 */
};

struct eternal_stats {
	size_t sz;                       /**< sizeof(struct eternal_stats) */
	enum eternal_state state;
	enum eternal_mode mode;
	enum eternal_trap_engine engine; /**< engine in effect (trap mode) */
	struct eternal_tier_stats tier[ETERNAL_NTIERS];
	uint64_t tag_blocks[ETERNAL_NTIERS][256];
	uint64_t tag_bytes[ETERNAL_NTIERS][256];
	uint64_t trap_writes[ETERNAL_NTIERS]; /**< trapped first writes, this process */
	uint64_t trap_dropped;                /**< events lost to a full ring */
	/* Placement of the sealed tier (appended in 0.1). */
	int32_t numa_policy;    /**< enum eternal_numa_policy set on the memfd */
	uint64_t numa_nodes;    /**< its node mask (bit K = node K); 0 for DEFAULT and LOCAL */
	uint64_t page_size;     /**< bytes per page backing the sealed tier */
	int32_t huge_status;    /**< enum eternal_huge_status */
	int32_t huge_errno;     /**< errno behind a fallback, 0 if none */
	int32_t replica_node;   /**< node of the replica this process maps, -1 none */
	uint32_t replicas;      /**< replicas built (eternal_replicas_build) */
	uint64_t replica_bytes; /**< memory they hold */
};

/** Fill @out (set out->sz first). Return zero or -errno. */
ETERNAL_API int eternal_stats_get(const eternal_region *r, struct eternal_stats *out);

/* ------------------------------------------------------------------ */
/* Placement                                                           */

/**
 * Count the committed pages of the sealed tier per NUMA node, as mapped in
 * this process: @per_node[K] += pages on node K (pages of the tier's page
 * size), for K < @nnodes. Return: the number of pages counted, or -errno
 * (-ENOSYS kernel without NUMA).
 */
ETERNAL_API int eternal_numa_pages(const eternal_region *r, uint64_t *per_node, size_t nnodes);

/**
 * After eternal_seal() in strict or off mode: copy the sealed tier once per
 * node of @nodes (0: every allowed node), each copy a sealed memfd whose
 * pages are bound to its node. Call it in the parent before forking: the
 * copies are shared by every worker on the same node. Memory grows by one
 * committed size per node; the copy runs at memcpy speed.
 * Return: the number of replicas built, -EINVAL (node outside the allowed
 * set), -EOPNOTSUPP (trap or audit mode, or not sealed), -EALREADY, -ENOMEM.
 */
ETERNAL_API int eternal_replicas_build(eternal_region *r, uint64_t nodes);

/**
 * Map the replica of @node (-1: the node of the CPU this thread runs on) at
 * the sealed tier's address, in place of what was mapped there: every
 * pointer stays valid, reads come from that node. Call it in a worker after
 * pinning it. Return: the node attached, -ENOENT no replica for that node,
 * -EOPNOTSUPP no replicas built, -EBADF.
 */
ETERNAL_API int eternal_replica_attach(eternal_region *r, int node);

/* ------------------------------------------------------------------ */
/* Misc                                                                */

enum eternal_log_level { ETERNAL_LOG_ERROR = 0, ETERNAL_LOG_WARN = 1, ETERNAL_LOG_INFO = 2, ETERNAL_LOG_DEBUG = 3 };
typedef void (*eternal_log_fn)(enum eternal_log_level level, const char *msg, void *arg);

/** Install (or with NULL remove) the log callback. Process-wide. */
ETERNAL_API void eternal_set_log(eternal_log_fn fn, void *arg);

ETERNAL_API const char *eternal_mode_name(enum eternal_mode mode);
ETERNAL_API const char *eternal_engine_name(enum eternal_trap_engine engine);
ETERNAL_API const char *eternal_numa_policy_name(enum eternal_numa_policy policy);
ETERNAL_API const char *eternal_huge_status_name(enum eternal_huge_status status);
ETERNAL_API const char *eternal_version(void);

#ifdef __cplusplus
}
#endif
#endif /* ETERNAL_H */
