/* trap.c - trap and audit modes: engine probes, arming the sealed (and cow)
 * tier, the signal handlers and handler thread, the event ring, fork re-arm. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"
#include "uffd-compat.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define PAGE_SHIFT_MIN 12
#define DEFAULT_RING 4096u
#define MAX_RING (1u << 22)
#define MAX_TRAPS 16
#define STACK_WINDOW (64ul << 20) /* farthest a frame may sit above the faulting sp */

/* ------------------------------------------------------------------ */
/* Event ring: bounded multi-producer queue (Vyukov). Producers are signal
 * handlers and the handler thread, so push never blocks or allocates: a full
 * ring drops the event and the caller counts it. */

/* What the writer thread needs to unwind a stack without frame pointers
 * later, with the CFI in the binaries: the registers at the fault and a copy
 * of the top of the stack (libpython and most distribution code have no
 * frame pointers, so the walk in the handler stops at once there). */
#define UW_STACK 2048
#define UW_NREGS 17 /* x86-64 DWARF registers 0..16, 16 = return address (the PC) */
struct uw_ctx {
	uint64_t regs[UW_NREGS];
	uint32_t len;
	_Alignas(8) uint8_t stack[UW_STACK];
};

/* Captured in the handler: registers, and where the stack copy comes from. */
struct capture {
	uint64_t regs[UW_NREGS];
	const void *stack;
	uint32_t len;
};

struct ring_slot {
	_Atomic uint64_t seq;
	struct eternal_trap_event ev;
	struct uw_ctx ctx;
};

struct ring {
	struct ring_slot *slots;
	size_t stride;          /* bytes per slot: without stack copies, no uw_ctx */
	size_t map_len;
	uint64_t cap;
	_Atomic uint64_t head, tail;
};

static struct ring_slot *slot_at(const struct ring *q, uint64_t i)
{
	return (struct ring_slot *)((char *)q->slots + i * q->stride);
}

static void ring_reset(struct ring *q)
{
	for (uint64_t i = 0; i < q->cap; i++)
		atomic_store_explicit(&slot_at(q, i)->seq, i, memory_order_relaxed);
	atomic_store(&q->head, 0);
	atomic_store(&q->tail, 0);
}

static int ring_init(struct ring *q, uint64_t cap, bool stacks)
{
	size_t stride = stacks ? sizeof(struct ring_slot) : offsetof(struct ring_slot, ctx);
	stride = (stride + 63) & ~(size_t)63;
	q->stride = stride;
	size_t len = (size_t)cap * stride;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	q->slots = p;
	q->map_len = len;
	q->cap = cap;
	ring_reset(q);
	return 0;
}

static void ring_free(struct ring *q)
{
	if (q->slots)
		munmap(q->slots, q->map_len);
	q->slots = NULL;
}

/* Raw reads of another function's stack frames (their red zones too, under
 * AddressSanitizer): word by word through volatile, so that neither the
 * sanitizer nor a memcpy it intercepts gets in the way. */
#define NO_ASAN __attribute__((no_sanitize_address))

NO_ASAN static void copy_stack(uint8_t *dst, const void *src, uint32_t len)
{
	const volatile uint64_t *s = src;
	uint64_t *d = (uint64_t *)(void *)dst;
	for (uint32_t i = 0; i < len / 8; i++)
		d[i] = s[i];
}

static bool ring_push(struct ring *q, const struct eternal_trap_event *ev, const struct capture *cap)
{
	uint64_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
	struct ring_slot *s;
	for (;;) {
		s = slot_at(q, pos % q->cap);
		uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
		int64_t diff = (int64_t)(seq - pos);
		if (diff == 0) {
			if (atomic_compare_exchange_weak_explicit(&q->head, &pos, pos + 1,
								  memory_order_relaxed, memory_order_relaxed))
				break;
		} else if (diff < 0) {
			return false;
		} else {
			pos = atomic_load_explicit(&q->head, memory_order_relaxed);
		}
	}
	s->ev = *ev;
	if (cap && q->stride >= sizeof(struct ring_slot) && cap->len <= UW_STACK) {
		memcpy(s->ctx.regs, cap->regs, sizeof(cap->regs));
		copy_stack(s->ctx.stack, cap->stack, cap->len);
		s->ctx.len = cap->len;
	} else if (q->stride >= sizeof(struct ring_slot)) {
		s->ctx.regs[UW_NREGS - 1] = 0;
		s->ctx.len = 0;
	}
	atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
	return true;
}

/* Single consumer side (the log writer, under its mutex): copy the oldest
 * event without taking it, so it can still be found in the ring. */
static bool ring_peek(struct ring *q, uint64_t *posp, struct eternal_trap_event *ev, struct uw_ctx *ctx)
{
	uint64_t pos = atomic_load_explicit(&q->tail, memory_order_acquire);
	struct ring_slot *s = slot_at(q, pos % q->cap);
	if (atomic_load_explicit(&s->seq, memory_order_acquire) != pos + 1)
		return false;
	*ev = s->ev;
	if (ctx && q->stride >= sizeof(struct ring_slot)) {
		memcpy(ctx->regs, s->ctx.regs, sizeof(ctx->regs));
		ctx->len = s->ctx.len;
		memcpy(ctx->stack, s->ctx.stack, s->ctx.len);
	} else if (ctx) {
		ctx->len = 0;
	}
	*posp = pos;
	return true;
}

/* Take the event peeked at @pos; false if another consumer took it first. */
static bool ring_commit(struct ring *q, uint64_t pos)
{
	uint64_t exp = pos;
	if (!atomic_compare_exchange_strong_explicit(&q->tail, &exp, pos + 1, memory_order_acq_rel,
						     memory_order_relaxed))
		return false;
	atomic_store_explicit(&slot_at(q, pos % q->cap)->seq, pos + q->cap, memory_order_release);
	return true;
}

/* Nothing published at the head of the queue (a slot claimed but not yet
 * filled counts as empty: its producer kicks the consumer afterwards). */
static bool ring_empty(struct ring *q)
{
	uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
	return atomic_load_explicit(&slot_at(q, pos % q->cap)->seq, memory_order_acquire) != pos + 1;
}

static bool ring_pop(struct ring *q, struct eternal_trap_event *ev, struct uw_ctx *ctx)
{
	uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
	struct ring_slot *s;
	for (;;) {
		s = slot_at(q, pos % q->cap);
		uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
		int64_t diff = (int64_t)(seq - (pos + 1));
		if (diff == 0) {
			if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1,
								  memory_order_relaxed, memory_order_relaxed))
				break;
		} else if (diff < 0) {
			return false;
		} else {
			pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
		}
	}
	*ev = s->ev;
	if (ctx && q->stride >= sizeof(struct ring_slot)) {
		memcpy(ctx->regs, s->ctx.regs, sizeof(ctx->regs));
		ctx->len = s->ctx.len;
		memcpy(ctx->stack, s->ctx.stack, s->ctx.len);
	} else if (ctx) {
		ctx->len = 0;
	}
	atomic_store_explicit(&s->seq, pos + q->cap, memory_order_release);
	return true;
}

/* ------------------------------------------------------------------ */
/* Trap state */

struct trap_range {
	_Atomic uintptr_t lo, hi;  /* armed extent; hi == lo: nothing armed */
	uintptr_t limit;           /* end of the tier's reservation */
	_Atomic uint8_t *seen;     /* one bit per page of the reservation: first write logged */
	size_t seen_len;
	uintptr_t psz;             /* the tier's page size: huge for a hugetlb sealed tier */
	unsigned shift;            /* log2(psz) */
};

struct eternal_trap {
	struct eternal_region *r;
	enum eternal_mode mode;
	enum eternal_trap_engine engine;
	unsigned flags;
	bool cow;                     /* cow tier armed too */
	_Atomic int armed;
	_Atomic pid_t pid;
	int uffd;                     /* -1: none */
	int uffd_flags;               /* flags the uffd was created with */
	uint64_t features;            /* features requested from UFFDIO_API */
	int pagemap_fd;               /* audit: /proc/self/pagemap */
	struct trap_range rng[ETERNAL_NTIERS];
	struct ring ring;
	_Atomic uint64_t seq, writes[ETERNAL_NTIERS], dropped;

	/* thread engine */
	pthread_t thr;
	bool thr_running;
	int pin_cpu;                  /* cpu the handler thread is pinned to, -1 none */

	/* log sinks */
	char *log_dir;
	int log_fd;                   /* <log_dir>/<pid>.jsonl, -1 none */
	int wake_fd;                  /* eventfd the recorders kick, -1 without a writer */
	pthread_t wthr;
	bool wthr_running;
	_Atomic int wstop;
	_Atomic int wsleep;           /* the writer waits on wake_fd: recorders must kick it */
	pthread_mutex_t wmu;          /* serialises draining (writer thread vs eternal_trap_read) */
	struct eternal_trap_event *hist; /* events already logged, kept for eternal_trap_read */
	uint64_t hist_cap, hist_head, hist_count;
	eternal_describe_fn describe;
	void *describe_arg;
};

static struct eternal_trap *_Atomic g_traps[MAX_TRAPS];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t g_main_stack_hi;
static long g_page;
static unsigned g_page_shift;

static void page_init(void)
{
	if (g_page)
		return;
	long p = sysconf(_SC_PAGESIZE);
	unsigned s = PAGE_SHIFT_MIN;
	while ((1l << s) < p)
		s++;
	g_page_shift = s;
	g_page = p;
}

/* The page of tier @k holding @a: protection works in the tier's pages. */
#define TPAGE(t, k, a) ((a) & ~((t)->rng[k].psz - 1))
static uintptr_t page_up(uintptr_t a) { return (a + (uintptr_t)g_page - 1) & ~((uintptr_t)g_page - 1); }

/* ------------------------------------------------------------------ */
/* userfaultfd */

static int sys_userfaultfd(int flags)
{
	return (int)syscall(SYS_userfaultfd, flags);
}

static int dev_userfaultfd(int flags)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	int e = errno;
	close(dev);
	return fd < 0 ? -e : fd;
}

/* New uffd, the most capable first: the syscall, then /dev/userfaultfd (its
 * permissions may let an unprivileged user in), both able to see faults the
 * kernel takes for a syscall; then UFFD_USER_MODE_ONLY, which an unprivileged
 * process gets with vm.unprivileged_userfaultfd=0, but whose kernel-mode
 * faults fail with EFAULT. Returns fd or -errno (-EPERM: refused). */
static int uffd_open(int base_flags, int *used_flags)
{
	int flags = base_flags | O_CLOEXEC;
	int fd = sys_userfaultfd(flags), e = errno;
	if (fd < 0 && e == ENOSYS)
		return -ENOSYS;
	if (fd < 0) {
		fd = dev_userfaultfd(flags);
		if (fd < 0) {
			fd = sys_userfaultfd(flags | UFFD_USER_MODE_ONLY);
			if (fd >= 0)
				flags |= UFFD_USER_MODE_ONLY;
		}
	}
	if (fd < 0)
		return e == EPERM || errno == EPERM ? -EPERM : -e;
	if (used_flags)
		*used_flags = flags;
	return fd;
}

static int uffd_api(int fd, uint64_t features, uint64_t *supported)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	if (supported)
		*supported = api.features;
	return 0;
}

static int uffd_register_wp(int fd, uintptr_t lo, uintptr_t hi)
{
	struct uffdio_register reg = {
		.range = { .start = lo, .len = hi - lo },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	return 0;
}

static int uffd_wp(int fd, uintptr_t lo, uintptr_t len, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = lo, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	for (int i = 0; i < 64; i++) {
		if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return -EAGAIN;
}

/* ------------------------------------------------------------------ */
/* Probes: once per effective uid (a setuid child must not trust the
 * parent's answer), 1 usable / 0 not / -errno. */

enum probe_id { PROBE_PRECISE, PROBE_THREAD, PROBE_AUDIT, NPROBES };

#define F_PRECISE (UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_SIGBUS | UFFD_FEATURE_WP_HUGETLBFS_SHMEM)
#define F_THREAD (UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EXACT_ADDRESS | \
		  UFFD_FEATURE_WP_HUGETLBFS_SHMEM)
#define F_AUDIT (UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM)

static struct {
	int result[NPROBES]; /* 0 unknown, 1 yes, -errno no */
	uint64_t supported;  /* UFFDIO_API features, 0 unknown */
	uid_t euid;
	bool valid;
} g_probe;
static pthread_mutex_t g_probe_mu = PTHREAD_MUTEX_INITIALIZER;

static bool disabled_by_env(const char *name)
{
	/* ETERNAL_TRAP_DISABLE=precise,thread,audit pretends those are missing:
	 * lets tests and operators exercise the fallbacks on a full kernel. */
	const char *e = getenv("ETERNAL_TRAP_DISABLE");
	size_t n = strlen(name);
	while (e && *e) {
		const char *c = strchr(e, ',');
		size_t l = c ? (size_t)(c - e) : strlen(e);
		if (l == n && strncmp(e, name, n) == 0)
			return true;
		e = c ? c + 1 : NULL;
	}
	return false;
}

static uint64_t probe_features(uint64_t supported, enum probe_id id)
{
	uint64_t want = id == PROBE_PRECISE ? F_PRECISE : id == PROBE_THREAD ? F_THREAD : F_AUDIT;
	if ((supported & want) != want)
		return 0;
	return want | (supported & UFFD_FEATURE_WP_UNPOPULATED);
}

/* Does the whole recipe work on a scratch private memfd mapping, as the
 * sealed tier will be mapped? */
static int probe_run(enum probe_id id)
{
	static const char *names[] = { "precise", "thread", "audit" };
	if (disabled_by_env(names[id]) || disabled_by_env("uffd"))
		return -EOPNOTSUPP;
	if (!g_probe.supported) {
		int fd = uffd_open(O_NONBLOCK, NULL);
		if (fd < 0)
			return fd;
		uint64_t sup = 0;
		int rc = uffd_api(fd, 0, &sup);
		close(fd);
		if (rc < 0)
			return rc == -EINVAL ? -EOPNOTSUPP : rc;
		g_probe.supported = sup ? sup : 1;
	}
	uint64_t feat = probe_features(g_probe.supported, id);
	if (!feat)
		return -EOPNOTSUPP;
	int rc = 0, mfd = -1, fd = -1, pm = -1;
	void *p = MAP_FAILED;
	mfd = memfd_create("eternal-probe", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, g_page) < 0) {
		rc = -errno;
		goto out;
	}
	p = mmap(NULL, (size_t)g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	fd = uffd_open(O_NONBLOCK, NULL);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	if ((rc = uffd_api(fd, feat, NULL)) < 0 ||
	    (rc = uffd_register_wp(fd, (uintptr_t)p, (uintptr_t)p + (uintptr_t)g_page)) < 0 ||
	    (rc = uffd_wp(fd, (uintptr_t)p, (uintptr_t)g_page, true)) < 0)
		goto out;
	if (id == PROBE_AUDIT) {
		/* WP_ASYNC resolves the fault in the kernel: the write just works. */
		*(volatile char *)p = 1;
		pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (pm < 0) {
			rc = -errno;
			goto out;
		}
		struct page_region v[2];
		struct pm_scan_arg a = {
			.size = sizeof(a), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = (uintptr_t)p, .end = (uintptr_t)p + (uintptr_t)g_page,
			.vec = (uintptr_t)v, .vec_len = 2,
			.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(pm, PAGEMAP_SCAN, &a);
		if (n < 0)
			rc = errno == ENOTTY ? -EOPNOTSUPP : -errno;
		else if (n != 1)
			rc = -EOPNOTSUPP;
	}
out:
	if (rc == -EINVAL)
		rc = -EOPNOTSUPP;
	if (pm >= 0)
		close(pm);
	if (fd >= 0)
		close(fd);
	if (p != MAP_FAILED)
		munmap(p, (size_t)g_page);
	if (mfd >= 0)
		close(mfd);
	return rc < 0 ? rc : 1;
}

static int probe(enum probe_id id)
{
	page_init();
	pthread_mutex_lock(&g_probe_mu);
	if (!g_probe.valid || g_probe.euid != geteuid()) {
		memset(&g_probe, 0, sizeof(g_probe));
		g_probe.euid = geteuid();
		g_probe.valid = true;
	}
	if (!g_probe.result[id])
		g_probe.result[id] = probe_run(id);
	int rc = g_probe.result[id];
	pthread_mutex_unlock(&g_probe_mu);
	return rc;
}

ETERNAL_API int eternal_trap_probe(enum eternal_trap_engine engine)
{
	int rc;
	switch (engine) {
	case ETERNAL_ENGINE_AUTO:
	case ETERNAL_ENGINE_MPROTECT:
		return 1;
	case ETERNAL_ENGINE_PRECISE:
		rc = probe(PROBE_PRECISE);
		break;
	case ETERNAL_ENGINE_THREAD:
		rc = probe(PROBE_THREAD);
		break;
	default:
		return -EINVAL;
	}
	/* "not there" is an answer, not an error */
	return rc == 1 ? 1 : (rc == -EOPNOTSUPP || rc == -EPERM || rc == -ENOSYS) ? 0 : rc;
}

ETERNAL_API int eternal_audit_probe(void)
{
	int rc = probe(PROBE_AUDIT);
	return rc == 1 ? 1 : (rc == -EOPNOTSUPP || rc == -EPERM || rc == -ENOSYS) ? 0 : rc;
}

/* ------------------------------------------------------------------ */
/* Recording (async-signal-safe) */

static struct eternal_trap *trap_lookup(uintptr_t a, int *tier)
{
	for (int i = 0; i < MAX_TRAPS; i++) {
		struct eternal_trap *t = atomic_load_explicit(&g_traps[i], memory_order_acquire);
		if (!t)
			continue;
		for (int k = 0; k < ETERNAL_NTIERS; k++) {
			uintptr_t lo = atomic_load_explicit(&t->rng[k].lo, memory_order_relaxed);
			uintptr_t hi = atomic_load_explicit(&t->rng[k].hi, memory_order_relaxed);
			if (a >= lo && a < hi) {
				*tier = k;
				return t;
			}
		}
	}
	return NULL;
}

/* Top of the stack that holds @sp, so the frame walk never reads past it.
 * glibc puts a thread's TCB at the top of its stack mapping and %fs:0 points
 * to it; the main thread's stack top was read from /proc/self/maps. */
static uintptr_t stack_top(uintptr_t sp)
{
	if (g_main_stack_hi && sp < g_main_stack_hi && g_main_stack_hi - sp <= STACK_WINDOW)
		return g_main_stack_hi;
#if defined(__x86_64__)
	uintptr_t tcb;
	__asm__ volatile("mov %%fs:0, %0" : "=r"(tcb));
	if (sp < tcb && tcb - sp <= STACK_WINDOW)
		return tcb;
#endif
	return 0;
}

/* Executable mappings, read at prepare: lets the walk take the word at the
 * faulting sp as the return address of a leaf function that set up no frame
 * (GCC omits leaf frame pointers), but only if it points into code. */
#define MAX_EXEC 128
static struct { uintptr_t lo, hi; } g_exec[MAX_EXEC];
static _Atomic int g_nexec;

static bool is_code(uintptr_t a)
{
	int n = atomic_load_explicit(&g_nexec, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (a >= g_exec[i].lo && a < g_exec[i].hi)
			return true;
	return false;
}

extern void *__libc_stack_end; /* glibc: the main thread's initial sp */

/* Executable PT_LOAD segments, for a process whose /proc/self/maps is
 * unreadable (not dumpable after setuid). */
static int phdr_exec(struct dl_phdr_info *info, size_t size, void *arg)
{
	int *n = arg;
	(void)size;
	for (int i = 0; i < info->dlpi_phnum && *n < MAX_EXEC; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		g_exec[*n].lo = info->dlpi_addr + ph->p_vaddr;
		g_exec[*n].hi = g_exec[*n].lo + ph->p_memsz;
		(*n)++;
	}
	return 0;
}

static void read_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;
	if (!f) {
		atomic_store(&g_nexec, 0);
		dl_iterate_phdr(phdr_exec, &n);
		atomic_store_explicit(&g_nexec, n, memory_order_release);
		if (!g_main_stack_hi)
			g_main_stack_hi = page_up((uintptr_t)__libc_stack_end);
		return;
	}
	atomic_store(&g_nexec, 0);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perm[8];
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perm) != 3)
			continue;
		if (strstr(line, "[stack]"))
			g_main_stack_hi = hi;
		if (perm[2] == 'x' && n < MAX_EXEC && !strstr(line, "[vdso]") && !strstr(line, "[vsyscall]")) {
			g_exec[n].lo = lo;
			g_exec[n].hi = hi;
			n++;
		}
	}
	fclose(f);
	atomic_store_explicit(&g_nexec, n, memory_order_release);
}

/* Frame-pointer walk. Every frame must sit above the previous one and below
 * the stack top, so code built without frame pointers yields garbage
 * addresses at worst, never a fault. */
NO_ASAN static uint32_t walk_frames(uintptr_t fp, uintptr_t sp, uint64_t *out, uint32_t max)
{
	uintptr_t hi = stack_top(sp), lo = sp;
	uint32_t n = 0;
	if (!hi)
		return 0;
	if (sp + 8 <= hi && (sp & 7) == 0) {
		uintptr_t ret = *(const uintptr_t *)sp;
		bool framed = fp >= sp && fp + 16 <= hi && (fp & 7) == 0 && ((const uintptr_t *)fp)[1] == ret;
		if (!framed && is_code(ret))
			out[n++] = ret;
	}
	while (n < max && fp >= lo && fp + 16 <= hi && (fp & 7) == 0) {
		const uintptr_t *f = (const uintptr_t *)fp;
		uintptr_t next = f[0], ret = f[1];
		if (ret < 4096)
			break;
		out[n++] = ret;
		if (next <= fp)
			break;
		lo = fp + 16;
		fp = next;
	}
	return n;
}

static void fill_event(struct eternal_trap *t, struct eternal_trap_event *ev, int tier, uintptr_t a)
{
	struct timespec ts;
	struct eternal_block b;
	memset(ev, 0, sizeof(*ev));
	clock_gettime(CLOCK_REALTIME, &ts);
	ev->time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	ev->pid = atomic_load_explicit(&t->pid, memory_order_relaxed);
	ev->tid = (int32_t)syscall(SYS_gettid);
	ev->addr = a;
	ev->offset = a - t->r->tier[tier].base;
	ev->tier = tier;
	ev->engine = (uint8_t)t->engine;
	if (eternal_block_find(t->r, (const void *)a, &b) == 0) {
		ev->block_start = (uintptr_t)b.start;
		ev->block_size = b.size;
		ev->block_offset = a - (uintptr_t)b.start;
		ev->tag = b.tag;
	}
}

static void fill_context(struct eternal_trap_event *ev, const void *ucv, struct capture *cap)
{
	cap->len = 0;
	cap->stack = NULL;
	cap->regs[UW_NREGS - 1] = 0;
#if defined(__x86_64__)
	const ucontext_t *uc = ucv;
	const greg_t *g = uc->uc_mcontext.gregs;
	uintptr_t sp = (uintptr_t)g[REG_RSP], top = stack_top(sp);
	ev->pc = (uint64_t)g[REG_RIP];
	ev->nframes = walk_frames((uintptr_t)g[REG_RBP], sp, ev->frames, ETERNAL_TRAP_MAX_FRAMES);
	static const int dwarf_order[UW_NREGS] = { REG_RAX, REG_RDX, REG_RCX, REG_RBX, REG_RSI, REG_RDI,
						   REG_RBP, REG_RSP, REG_R8, REG_R9, REG_R10, REG_R11,
						   REG_R12, REG_R13, REG_R14, REG_R15, REG_RIP };
	for (int i = 0; i < UW_NREGS; i++)
		cap->regs[i] = (uint64_t)g[dwarf_order[i]];
	if (top > sp) {
		cap->stack = (const void *)sp;
		cap->len = (uint32_t)(top - sp < UW_STACK ? top - sp : UW_STACK);
	}
#elif defined(__aarch64__)
	const ucontext_t *uc = ucv;
	ev->pc = uc->uc_mcontext.pc;
	ev->nframes = walk_frames(uc->uc_mcontext.regs[29], uc->uc_mcontext.sp, ev->frames,
				  ETERNAL_TRAP_MAX_FRAMES);
#else
	(void)ucv;
	(void)ev;
#endif
}

/* First write to this page? Two threads racing on one page log it once. */
static bool first_write(struct eternal_trap *t, int tier, uintptr_t a)
{
	struct trap_range *g = &t->rng[tier];
	size_t pg = (a - t->r->tier[tier].base) >> g->shift;
	if (!g->seen || (pg >> 3) >= g->seen_len)
		return true;
	uint8_t bit = (uint8_t)(1u << (pg & 7));
	return !(atomic_fetch_or_explicit(&g->seen[pg >> 3], bit, memory_order_relaxed) & bit);
}

static void record(struct eternal_trap *t, struct eternal_trap_event *ev, const struct capture *cap)
{
	ev->seq = atomic_fetch_add_explicit(&t->seq, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&t->writes[ev->tier], 1, memory_order_relaxed);
	if (!ring_push(&t->ring, ev, cap))
		atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
	/* Kick the log writer only if it sleeps: a burst of traps costs one
	 * wake-up, not one each (the writer re-checks the ring before it sleeps). */
	if (t->wake_fd >= 0) {
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_exchange(&t->wsleep, 0)) {
			uint64_t one = 1;
			ssize_t w = write(t->wake_fd, &one, sizeof(one));
			(void)w;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Signal handlers. Installed once and kept: unknown faults go to whatever
 * handler was there before, or kill the process with the original signal. */

static struct sigaction g_old_bus, g_old_segv;
static bool g_have_bus, g_have_segv;

/* The process is about to die of a fault: put what the log writer has not
 * written yet on disk, without symbols (signal-safe formatting, write(2)). */
static void flush_on_death(void)
{
	char line[1024];
	struct eternal_trap_event ev;
	for (int i = 0; i < MAX_TRAPS; i++) {
		struct eternal_trap *t = atomic_load_explicit(&g_traps[i], memory_order_acquire);
		if (!t || t->log_fd < 0 || t->wake_fd < 0 || atomic_load(&t->pid) != getpid())
			continue;
		while (ring_pop(&t->ring, &ev, NULL)) {
			int n = _eternal_tlog_format(line, sizeof(line), &ev,
						     eternal_engine_name((enum eternal_trap_engine)ev.engine), NULL,
						     NULL, NULL);
			if (n > 0)
				_eternal_tlog_write(t->log_fd, line, (size_t)n);
		}
	}
}

static void chain(int sig, siginfo_t *si, void *uc, const struct sigaction *old)
{
	/* whoever handles it next (faulthandler, a sanitizer) likely ends the
	 * process: flushing early costs nothing if it does not */
	flush_on_death();
	bool fn = (old->sa_flags & SA_SIGINFO) ? old->sa_sigaction != NULL
					       : old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN;
	if (fn) {
		/* ours runs with SA_NODEFER; give the next one the mask it asked for */
		sigset_t mask = old->sa_mask, prev;
		if (!(old->sa_flags & SA_NODEFER))
			sigaddset(&mask, sig);
		pthread_sigmask(SIG_BLOCK, &mask, &prev);
		if (old->sa_flags & SA_SIGINFO)
			old->sa_sigaction(sig, si, uc);
		else
			old->sa_handler(sig);
		pthread_sigmask(SIG_SETMASK, &prev, NULL);
		return;
	}
	/* Default action: reset it and let the fault happen again, so the
	 * process dies of the original signal at the original address. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
	if (si->si_code <= 0)
		raise(sig);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	int saved = errno, tier;
	uintptr_t a = (uintptr_t)si->si_addr;
	struct eternal_trap *t = si->si_code == BUS_ADRERR ? trap_lookup(a, &tier) : NULL;
	if (t && t->engine == ETERNAL_ENGINE_PRECISE && atomic_load(&t->armed) && t->uffd >= 0) {
		if (first_write(t, tier, a)) {
			struct eternal_trap_event ev;
			struct capture cap;
			fill_event(t, &ev, tier, a);
			fill_context(&ev, uc, &cap);
			record(t, &ev, &cap);
		}
		if (uffd_wp(t->uffd, TPAGE(t, tier, a), t->rng[tier].psz, false) == 0) {
			errno = saved;
			return;
		}
	}
	chain(sig, si, uc, &g_old_bus);
	errno = saved;
}

/* Strict mode: the process dies, but first says which block was hit. The
 * record is formatted without malloc or stdio and written straight to the
 * log file; the describe callback runs only if the caller vouched for it. */
static void strict_diag(struct eternal_trap *t, int tier, uintptr_t a, void *uc)
{
	struct eternal_trap_event ev;
	char line[1024], desc[256];
	const char *dp = NULL;
	struct capture cap;
	fill_event(t, &ev, tier, a);
	fill_context(&ev, uc, &cap);
	ev.engine = 0;
	ev.seq = atomic_fetch_add_explicit(&t->seq, 1, memory_order_relaxed);
	if (!ring_push(&t->ring, &ev, NULL))
		atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
	if (t->describe && (t->flags & ETERNAL_TRAP_STRICT_DESCRIBE) && ev.block_start) {
		if (t->describe(&ev, desc, sizeof(desc), t->describe_arg) > 0)
			dp = desc;
	}
	if (t->log_fd >= 0) {
		int n = _eternal_tlog_format(line, sizeof(line), &ev, "strict", NULL, NULL, dp);
		if (n > 0)
			_eternal_tlog_write(t->log_fd, line, (size_t)n);
	}
	if (_eternal_tlog_strict_msg(line, sizeof(line), &ev, dp) > 0)
		_eternal_log(ETERNAL_LOG_ERROR, "%s", line);
}

static void on_sigsegv(int sig, siginfo_t *si, void *uc)
{
	int saved = errno, tier;
	uintptr_t a = (uintptr_t)si->si_addr;
	struct eternal_trap *t = si->si_code == SEGV_ACCERR ? trap_lookup(a, &tier) : NULL;
	if (t && t->engine == ETERNAL_ENGINE_MPROTECT && t->mode == ETERNAL_MODE_TRAP &&
	    atomic_load(&t->armed)) {
		if (first_write(t, tier, a)) {
			struct eternal_trap_event ev;
			struct capture cap;
			fill_event(t, &ev, tier, a);
			fill_context(&ev, uc, &cap);
			record(t, &ev, &cap);
		}
		if (mprotect((void *)TPAGE(t, tier, a), t->rng[tier].psz, PROT_READ | PROT_WRITE) == 0) {
			errno = saved;
			return;
		}
		/* ENOMEM: every scattered page un-protected splits the VMA and
		 * vm.max_map_count is reached. Give the whole tier back rather
		 * than kill the process; the lost protection counts as drops. */
		uintptr_t lo = atomic_load(&t->rng[tier].lo), hi = atomic_load(&t->rng[tier].hi);
		if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) == 0) {
			atomic_store(&t->rng[tier].hi, lo);
			atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
			errno = saved;
			return;
		}
	} else if (t && t->mode == ETERNAL_MODE_STRICT && tier == ETERNAL_TIER_SEALED) {
		bool write = true;
#if defined(__x86_64__)
		write = (((const ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#endif
		if (write && first_write(t, tier, a))
			strict_diag(t, tier, a, uc);
	}
	chain(sig, si, uc, &g_old_segv);
	errno = saved;
}

static int install_handler(int sig)
{
	struct sigaction sa, *old = sig == SIGBUS ? &g_old_bus : &g_old_segv;
	bool *have = sig == SIGBUS ? &g_have_bus : &g_have_segv;
	if (*have)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sig == SIGBUS ? on_sigbus : on_sigsegv;
	/* SA_NODEFER: a signal handler of the program's that runs while ours
	 * does (or ours interrupted it) may write a trapped page too; with our
	 * signal blocked, that nested fault would kill the process. */
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, old) < 0)
		return -errno;
	*have = true;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Thread engine */

/* /proc/self/task/TID/syscall of a thread blocked in the fault: "-1 sp pc"
 * for a user store, "nr args... sp pc" when the kernel wrote during a
 * syscall. The fds are cached per tid: open+close would double the cost. */
struct tid_fd {
	pid_t tid;
	int fd;
};
#define TID_CACHE 32

static int thread_syscall_info(struct tid_fd *cache, pid_t tid, uint64_t *pc, bool *kernel)
{
	struct tid_fd *e = &cache[(unsigned)tid % TID_CACHE];
	char buf[256];
	for (int attempt = 0; attempt < 2; attempt++) {
		if (e->tid != tid || e->fd < 0) {
			if (e->fd >= 0)
				close(e->fd);
			snprintf(buf, sizeof(buf), "/proc/self/task/%d/syscall", (int)tid);
			e->fd = open(buf, O_RDONLY | O_CLOEXEC);
			e->tid = tid;
			if (e->fd < 0)
				return -errno;
		}
		ssize_t n = pread(e->fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0) {
			close(e->fd);
			e->fd = -1;
			continue;
		}
		buf[n] = 0;
		char *last = strrchr(buf, ' ');
		if (!last || strncmp(buf, "running", 7) == 0)
			return -EAGAIN;
		*kernel = strncmp(buf, "-1 ", 3) != 0;
		*pc = strtoull(last + 1, NULL, 16);
		return 0;
	}
	return -ESRCH;
}

static int thread_cpu(pid_t tid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* field 39 "processor"; p points at the end of field 2 */
	int field = 2;
	for (; *p && field < 39; p++)
		if (*p == ' ')
			field++;
	return atoi(p);
}

static void pin_self(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void close_tid_cache(void *arg)
{
	struct tid_fd *cache = arg;
	for (int i = 0; i < TID_CACHE; i++)
		if (cache[i].fd >= 0)
			close(cache[i].fd);
}

static void handler_loop(struct eternal_trap *t, struct tid_fd *cache)
{
	struct uffd_msg msgs[16];
	bool busy = t->flags & ETERNAL_TRAP_BUSY_POLL, warned = false;
	pid_t last_tid = 0;
	if (!busy && t->pin_cpu >= 0)
		pin_self(t->pin_cpu);
	for (;;) {
		ssize_t n;
		if (busy) {
			n = read(t->uffd, msgs, sizeof(msgs)); /* O_NONBLOCK */
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				if (atomic_load_explicit(&t->wstop, memory_order_relaxed) & 2)
					break;
				continue;
			}
		} else {
			pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
			n = read(t->uffd, msgs, sizeof(msgs));
			pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n < 0)
			break; /* EBADF: closed under us */
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			struct uffd_msg *m = &msgs[i];
			if (m->event != UFFD_EVENT_PAGEFAULT)
				continue;
			uintptr_t a = (uintptr_t)m->arg.pagefault.address;
			pid_t tid = (pid_t)m->arg.pagefault.feat.ptid;
			int tier;
			struct eternal_trap *hit = trap_lookup(a, &tier);
			if (hit == t && (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) &&
			    first_write(t, tier, a)) {
				struct eternal_trap_event ev;
				uint64_t pc = 0;
				bool kernel = false;
				fill_event(t, &ev, tier, a);
				ev.tid = tid;
				int err = thread_syscall_info(cache, tid, &pc, &kernel);
				if (err == 0) {
					ev.pc = pc;
					ev.kernel = kernel;
				} else if (!warned) {
					/* e.g. EACCES after setuid(): the process is not dumpable */
					_eternal_log(ETERNAL_LOG_WARN, "trap: thread engine cannot read "
						     "/proc/self/task/%d/syscall (%s): events carry no PC",
						     (int)tid, strerror(-err));
					warned = true;
				}
				record(t, &ev, NULL);
			}
			if (!busy && tid != last_tid) {
				/* follow the writer: a cross-CPU wakeup costs ~7x */
				int cpu = thread_cpu(tid);
				if (cpu >= 0 && cpu != t->pin_cpu) {
					t->pin_cpu = cpu;
					pin_self(cpu);
				}
				last_tid = tid;
			}
			uintptr_t psz = hit == t ? t->rng[tier].psz : (uintptr_t)g_page, pg = a & ~(psz - 1);
			if (uffd_wp(t->uffd, pg, psz, false) < 0 && uffd_wp(t->uffd, pg, psz, false) < 0) {
				/* the writer would wait forever: unregister, which wakes it */
				struct uffdio_range ur = { .start = pg, .len = psz };
				if (hit == t) {
					ur.start = atomic_load(&t->rng[tier].lo);
					ur.len = atomic_load(&t->rng[tier].hi) - ur.start;
					atomic_store(&t->rng[tier].hi, ur.start);
				}
				ioctl(t->uffd, UFFDIO_UNREGISTER, &ur);
				atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
				_eternal_log(ETERNAL_LOG_ERROR, "trap: cannot un-protect %#lx (%s): tier disarmed",
					     (unsigned long)a, strerror(errno));
			}
		}
	}
}

static void *handler_thread(void *arg)
{
	struct tid_fd cache[TID_CACHE];
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (int i = 0; i < TID_CACHE; i++)
		cache[i] = (struct tid_fd){ 0, -1 };
	/* One blocking read(2) per fault, no poll: stop_threads() cancels the
	 * thread, and only while it waits there, never inside a callback. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cleanup_push(close_tid_cache, cache);
	handler_loop(arg, cache);
	pthread_cleanup_pop(1);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Log writer thread: drains the ring into <log_dir>/<pid>.jsonl, one
 * write(2) per record so a later crash loses nothing already trapped, and
 * keeps what it wrote for eternal_trap_read. */

static void hist_push(struct eternal_trap *t, const struct eternal_trap_event *ev)
{
	if (!t->hist_cap)
		return;
	t->hist[(t->hist_head + t->hist_count) % t->hist_cap] = *ev;
	if (t->hist_count < t->hist_cap)
		t->hist_count++;
	else
		t->hist_head = (t->hist_head + 1) % t->hist_cap;
}

/* A symbol, or at least "?? (module+0xoff)". */
static bool symbolize_any(uint64_t pc, char *buf, size_t len)
{
	buf[0] = 0;
	int rc = eternal_symbolize(pc, buf, len);
	return rc > 0 || (rc == -ENOENT && buf[0]);
}

/* One JSON line for @ev into @line (symbols, description); its length. */
static int format_one(struct eternal_trap *t, const struct eternal_trap_event *ev, char *line, size_t len)
{
	char sym[256], fsym[ETERNAL_TRAP_MAX_FRAMES][128], desc[512];
	const char *fp[ETERNAL_TRAP_MAX_FRAMES];
	const char *sp = NULL, *dp = NULL;
	if (ev->pc && symbolize_any(ev->pc, sym, sizeof(sym)))
		sp = sym;
	for (uint32_t i = 0; i < ev->nframes && i < ETERNAL_TRAP_MAX_FRAMES; i++)
		fp[i] = symbolize_any(ev->frames[i], fsym[i], sizeof(fsym[i])) ? fsym[i] : NULL;
	if (t->describe && ev->block_start && t->describe(ev, desc, sizeof(desc), t->describe_arg) > 0)
		dp = desc;
	return _eternal_tlog_format(line, len, ev, eternal_engine_name((enum eternal_trap_engine)ev->engine), sp,
				    ev->nframes ? fp : NULL, dp);
}

/* Frames from the CFI unwind of the captured stack, when it finds more than
 * the frame-pointer walk did in the handler. */
static void unwind_event(struct eternal_trap_event *ev, const struct uw_ctx *ctx)
{
	uint64_t fr[ETERNAL_TRAP_MAX_FRAMES];
	if (!ctx->len || !ctx->regs[UW_NREGS - 1])
		return;
	int n = _eternal_unwind(ev->tid, ctx->regs, UW_NREGS, ctx->stack, ctx->len, fr, ETERNAL_TRAP_MAX_FRAMES);
	if (n > (int)ev->nframes) {
		memcpy(ev->frames, fr, (size_t)n * sizeof(fr[0]));
		ev->nframes = (uint32_t)n;
	}
}

/* The event stays in the ring while it is unwound, symbolized and described
 * (milliseconds, the first time in a process): a crash meanwhile still finds
 * it there and flush_on_death() writes it. It leaves the ring just before
 * its line is written; if the dying handler took it first, it is not
 * written twice. */
static void drain_locked(struct eternal_trap *t)
{
	struct eternal_trap_event ev;
	struct uw_ctx ctx;
	char line[4096];
	uint64_t pos;
	while (ring_peek(&t->ring, &pos, &ev, &ctx)) {
		unwind_event(&ev, &ctx);
		int n = format_one(t, &ev, line, sizeof(line));
		if (!ring_commit(&t->ring, pos))
			continue;
		if (n > 0 && t->log_fd >= 0)
			_eternal_tlog_write(t->log_fd, line, (size_t)n);
		hist_push(t, &ev);
	}
}

static void *writer_thread(void *arg)
{
	struct eternal_trap *t = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		uint64_t v;
		pthread_mutex_lock(&t->wmu);
		drain_locked(t);
		pthread_mutex_unlock(&t->wmu);
		if (atomic_load(&t->wstop) & 1)
			break;
		atomic_store(&t->wsleep, 1);
		atomic_thread_fence(memory_order_seq_cst);
		if (!ring_empty(&t->ring)) {
			atomic_store(&t->wsleep, 0);
			continue;
		}
		if (read(t->wake_fd, &v, sizeof(v)) < 0 && errno != EINTR && errno != EAGAIN)
			break;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Life cycle */

static int registry_add(struct eternal_trap *t)
{
	for (int i = 0; i < MAX_TRAPS; i++) {
		struct eternal_trap *exp = NULL;
		if (atomic_compare_exchange_strong(&g_traps[i], &exp, t))
			return 0;
	}
	return -ENOSPC;
}

static void registry_del(struct eternal_trap *t)
{
	for (int i = 0; i < MAX_TRAPS; i++) {
		struct eternal_trap *exp = t;
		atomic_compare_exchange_strong(&g_traps[i], &exp, NULL);
	}
}

/* No lock is taken around fork: region.c's prepare handler takes every
 * region lock, and seal holds that lock while it takes g_mu. The registry is
 * read with atomics, and no seal is half done when fork runs. */
static void atfork_child(void);
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void once_init(void)
{
	page_init();
	pthread_atfork(NULL, NULL, atfork_child);
}

static void trap_free(struct eternal_trap *t)
{
	if (!t)
		return;
	for (int k = 0; k < ETERNAL_NTIERS; k++)
		if (t->rng[k].seen)
			munmap((void *)t->rng[k].seen, t->rng[k].seen_len);
	ring_free(&t->ring);
	if (t->uffd >= 0)
		close(t->uffd);
	if (t->pagemap_fd >= 0)
		close(t->pagemap_fd);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	if (t->log_fd >= 0)
		close(t->log_fd);
	free(t->hist);
	free(t->log_dir);
	pthread_mutex_destroy(&t->wmu);
	free(t);
}

static int open_uffd_for(struct eternal_trap *t)
{
	int nb = t->engine == ETERNAL_ENGINE_THREAD && (t->flags & ETERNAL_TRAP_BUSY_POLL) ? O_NONBLOCK : 0;
	int fd = uffd_open(nb, &t->uffd_flags);
	if (fd < 0)
		return fd;
	int rc = uffd_api(fd, t->features, NULL);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

static int start_threads(struct eternal_trap *t)
{
	int rc;
	if (t->engine == ETERNAL_ENGINE_THREAD && t->mode == ETERNAL_MODE_TRAP && !t->thr_running) {
		if ((rc = pthread_create(&t->thr, NULL, handler_thread, t)) != 0)
			return -rc;
		t->thr_running = true;
	}
	if (t->wake_fd >= 0 && !t->wthr_running) {
		if ((rc = pthread_create(&t->wthr, NULL, writer_thread, t)) != 0)
			return -rc;
		t->wthr_running = true;
	}
	return 0;
}

static void stop_threads(struct eternal_trap *t)
{
	uint64_t one = 1;
	ssize_t w;
	if (t->thr_running) {
		atomic_fetch_or(&t->wstop, 2);
		if (!(t->flags & ETERNAL_TRAP_BUSY_POLL))
			pthread_cancel(t->thr);
		pthread_join(t->thr, NULL);
		t->thr_running = false;
	}
	if (t->wthr_running) {
		atomic_fetch_or(&t->wstop, 1);
		w = write(t->wake_fd, &one, sizeof(one));
		pthread_join(t->wthr, NULL);
		t->wthr_running = false;
	}
	(void)w;
	atomic_store(&t->wstop, 0);
}

static int open_log(struct eternal_trap *t)
{
	int fd = _eternal_tlog_open(t->log_dir, getpid());
	if (fd < 0)
		return fd;
	if (t->log_fd >= 0)
		close(t->log_fd);
	t->log_fd = fd;
	return 0;
}

ETERNAL_HIDDEN int _eternal_trap_prepare(struct eternal_region *r, enum eternal_mode mode,
					 const struct eternal_trap_opts *o)
{
	struct eternal_trap_opts opt = { .sz = sizeof(opt) };
	struct eternal_trap *t = NULL;
	int rc;

	if (mode == ETERNAL_MODE_OFF)
		return 0;
	if (mode != ETERNAL_MODE_STRICT && mode != ETERNAL_MODE_TRAP && mode != ETERNAL_MODE_AUDIT)
		return -EINVAL;
	if (r->trap)
		return -EALREADY;
	if (o) {
		if (o->sz < offsetof(struct eternal_trap_opts, ring_capacity))
			return -EINVAL;
		memcpy(&opt, o, o->sz < sizeof(opt) ? o->sz : sizeof(opt));
		opt.sz = sizeof(opt);
	}
	if ((unsigned)opt.engine > ETERNAL_ENGINE_MPROTECT || (opt.flags & ~ETERNAL_TRAP_FLAGS_ALL) ||
	    opt.ring_capacity > MAX_RING)
		return -EINVAL;
	pthread_once(&g_once, once_init);
	read_maps(); /* modules loaded since the last seal */

	enum eternal_trap_engine eng = ETERNAL_ENGINE_AUTO;
	uint64_t feat = 0;
	if (mode == ETERNAL_MODE_TRAP) {
		eng = opt.engine;
		if (eng == ETERNAL_ENGINE_AUTO) {
			eng = probe(PROBE_PRECISE) == 1 ? ETERNAL_ENGINE_PRECISE
			      : probe(PROBE_THREAD) == 1 ? ETERNAL_ENGINE_THREAD
							 : ETERNAL_ENGINE_MPROTECT;
		} else if (eng != ETERNAL_ENGINE_MPROTECT) {
			rc = probe(eng == ETERNAL_ENGINE_PRECISE ? PROBE_PRECISE : PROBE_THREAD);
			if (rc != 1) {
				_eternal_log(ETERNAL_LOG_ERROR, "trap: engine %s unavailable: %s",
					     eternal_engine_name(eng), strerror(-rc));
				return rc == -EPERM ? -EPERM : rc == -ENOMEM ? -ENOMEM : -EOPNOTSUPP;
			}
		}
		if (eng != ETERNAL_ENGINE_MPROTECT)
			feat = probe_features(g_probe.supported,
					      eng == ETERNAL_ENGINE_PRECISE ? PROBE_PRECISE : PROBE_THREAD);
	} else if (mode == ETERNAL_MODE_AUDIT) {
		rc = probe(PROBE_AUDIT);
		if (rc != 1) {
			_eternal_log(ETERNAL_LOG_ERROR, "audit: WP_ASYNC + PAGEMAP_SCAN unavailable: %s",
				     strerror(-rc));
			return rc == -EPERM ? -EPERM : rc == -ENOMEM ? -ENOMEM : -EOPNOTSUPP;
		}
		feat = probe_features(g_probe.supported, PROBE_AUDIT);
	}

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->r = r;
	t->mode = mode;
	t->engine = eng;
	t->flags = opt.flags;
	t->cow = mode != ETERNAL_MODE_STRICT && (opt.flags & ETERNAL_TRAP_COW_TIER);
	t->features = feat;
	t->uffd = t->pagemap_fd = t->wake_fd = t->log_fd = -1;
	t->pin_cpu = -1;
	t->describe = opt.describe;
	t->describe_arg = opt.describe_arg;
	atomic_store(&t->pid, getpid());
	pthread_mutex_init(&t->wmu, NULL);

	for (int k = 0; k < ETERNAL_NTIERS; k++) {
		struct tier *tr = &r->tier[k];
		t->rng[k].limit = tr->limit;
		t->rng[k].psz = tr->page_size ? tr->page_size : (uintptr_t)g_page;
		t->rng[k].shift = (unsigned)__builtin_ctzl(t->rng[k].psz);
		if (k == ETERNAL_TIER_COW && !t->cow)
			continue;
		size_t pages = (tr->limit - tr->base) >> t->rng[k].shift;
		t->rng[k].seen_len = page_up((pages + 7) / 8);
		void *p = mmap(NULL, t->rng[k].seen_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			rc = -errno;
			goto fail;
		}
		t->rng[k].seen = p;
	}
	/* stack copies only where a handler runs in the writer (not the thread
	 * engine, nor strict mode, whose process dies) and the caller wants them */
	bool stacks = mode == ETERNAL_MODE_TRAP && eng != ETERNAL_ENGINE_THREAD && !(opt.flags & ETERNAL_TRAP_FP_ONLY);
	if ((rc = ring_init(&t->ring, opt.ring_capacity ? opt.ring_capacity : DEFAULT_RING, stacks)) < 0)
		goto fail;
	if (feat) {
		rc = open_uffd_for(t);
		if (rc < 0)
			goto fail;
		t->uffd = rc;
	}
	if (mode == ETERNAL_MODE_AUDIT) {
		t->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (t->pagemap_fd < 0) {
			rc = -errno;
			goto fail;
		}
	}
	if (eng == ETERNAL_ENGINE_THREAD) {
		int cpu = sched_getcpu();
		t->pin_cpu = cpu;
	}
	if (opt.log_dir && mode != ETERNAL_MODE_AUDIT) {
		t->log_dir = strdup(opt.log_dir);
		if (!t->log_dir) {
			rc = -ENOMEM;
			goto fail;
		}
		if ((rc = open_log(t)) < 0)
			goto fail;
		if (mode == ETERNAL_MODE_TRAP) {
			t->wake_fd = eventfd(0, EFD_CLOEXEC); /* the writer blocks in read(2) */
			t->hist_cap = t->ring.cap;
			t->hist = calloc(t->hist_cap, sizeof(*t->hist));
			if (t->wake_fd < 0 || !t->hist) {
				rc = t->wake_fd < 0 ? -errno : -ENOMEM;
				goto fail;
			}
		}
	}
	pthread_mutex_lock(&g_mu); /* two regions may be sealed at once */
	/* with a log, every engine hooks the fatal faults too: a crash flushes
	 * the records the writer thread has not written yet */
	bool logging = t->wake_fd >= 0;
	if (eng == ETERNAL_ENGINE_PRECISE || logging)
		rc = install_handler(SIGBUS);
	if (rc >= 0 && (eng == ETERNAL_ENGINE_MPROTECT || mode == ETERNAL_MODE_STRICT || logging))
		rc = install_handler(SIGSEGV);
	if (rc >= 0)
		rc = registry_add(t);
	pthread_mutex_unlock(&g_mu);
	if (rc < 0)
		goto fail;
	r->trap = t;
	return 0;
fail:
	trap_free(t);
	return rc;
}

/* Register and protect [lo, hi) of tier @k. */
static int arm_range(struct eternal_trap *t, int k, uintptr_t lo, uintptr_t hi)
{
	int rc = 0;
	if (hi <= lo)
		return 0;
	if (t->mode == ETERNAL_MODE_STRICT) {
		/* nothing to protect: the mapping is read-only */
	} else if (t->engine == ETERNAL_ENGINE_MPROTECT) {
		if (mprotect((void *)lo, hi - lo, PROT_READ) < 0)
			rc = -errno;
	} else {
		if ((rc = uffd_register_wp(t->uffd, lo, hi)) == 0)
			rc = uffd_wp(t->uffd, lo, hi - lo, true);
	}
	if (rc == 0) {
		uintptr_t cur = atomic_load(&t->rng[k].lo);
		if (cur == atomic_load(&t->rng[k].hi))
			atomic_store(&t->rng[k].lo, lo);
		atomic_store(&t->rng[k].hi, hi);
	}
	return rc;
}

static int arm_all(struct eternal_trap *t)
{
	struct eternal_region *r = t->r;
	int rc;
	for (int k = 0; k < ETERNAL_NTIERS; k++) {
		if (k == ETERNAL_TIER_COW && !t->cow)
			continue;
		uintptr_t lo = r->tier[k].base;
		uintptr_t hi = t->mode == ETERNAL_MODE_STRICT ? r->tier[k].limit
							     : (r->tier[k].base + r->tier[k].committed +
								t->rng[k].psz - 1) & ~(t->rng[k].psz - 1);
		atomic_store(&t->rng[k].lo, lo);
		atomic_store(&t->rng[k].hi, lo);
		if ((rc = arm_range(t, k, lo, hi)) < 0)
			return rc;
	}
	return 0;
}

ETERNAL_HIDDEN int _eternal_trap_arm(struct eternal_region *r)
{
	struct eternal_trap *t = r->trap;
	int rc;
	if (!t)
		return 0;
	if ((rc = arm_all(t)) < 0 || (rc = start_threads(t)) < 0) {
		_eternal_log(ETERNAL_LOG_ERROR, "trap: arming failed: %s", strerror(-rc));
		return rc;
	}
	atomic_store(&t->armed, 1);
	if (t->mode == ETERNAL_MODE_TRAP)
		_eternal_log(ETERNAL_LOG_INFO, "trap: engine %s armed%s%s", eternal_engine_name(t->engine),
			     (t->uffd_flags & UFFD_USER_MODE_ONLY) ? " (user-mode-only uffd: kernel writes fail with EFAULT)" : "",
			     t->cow ? ", cow tier too" : "");
	return 0;
}

ETERNAL_HIDDEN int _eternal_trap_grow(struct eternal_region *r, enum eternal_tier tier, uintptr_t lo, uintptr_t hi)
{
	struct eternal_trap *t = r ? r->trap : NULL;
	if (!t || !atomic_load(&t->armed) || tier < 0 || tier >= ETERNAL_NTIERS ||
	    (tier == ETERNAL_TIER_COW && !t->cow) || t->mode == ETERNAL_MODE_STRICT)
		return 0;
	uintptr_t psz = t->rng[tier].psz;
	return arm_range(t, tier, lo & ~(psz - 1), (hi + psz - 1) & ~(psz - 1));
}

static void disarm(struct eternal_trap *t)
{
	atomic_store(&t->armed, 0);
	for (int k = 0; k < ETERNAL_NTIERS; k++) {
		uintptr_t lo = atomic_load(&t->rng[k].lo), hi = atomic_load(&t->rng[k].hi);
		if (hi > lo && t->mode != ETERNAL_MODE_STRICT) {
			if (t->uffd >= 0) {
				struct uffdio_range ur = { .start = lo, .len = hi - lo };
				ioctl(t->uffd, UFFDIO_UNREGISTER, &ur);
			} else if (t->engine == ETERNAL_ENGINE_MPROTECT) {
				mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE);
			}
		}
	}
}

static void trap_destroy(struct eternal_region *r)
{
	struct eternal_trap *t = r->trap;
	if (!t)
		return;
	disarm(t);
	stop_threads(t);
	if (t->wake_fd >= 0) {
		pthread_mutex_lock(&t->wmu);
		drain_locked(t);
		pthread_mutex_unlock(&t->wmu);
	}
	pthread_mutex_lock(&g_mu);
	registry_del(t);
	pthread_mutex_unlock(&g_mu);
	r->trap = NULL;
	trap_free(t);
}

ETERNAL_HIDDEN void _eternal_trap_abort(struct eternal_region *r)
{
	if (r)
		trap_destroy(r);
}

ETERNAL_HIDDEN void _eternal_trap_close(struct eternal_region *r)
{
	if (r)
		trap_destroy(r);
}

ETERNAL_HIDDEN void _eternal_trap_stats(const struct eternal_region *r, struct eternal_stats *st)
{
	const struct eternal_trap *t = r ? r->trap : NULL;
	if (!t || !st)
		return;
	if (t->mode == ETERNAL_MODE_TRAP)
		st->engine = t->engine;
	for (int k = 0; k < ETERNAL_NTIERS; k++)
		st->trap_writes[k] = atomic_load(&t->writes[k]);
	st->trap_dropped = atomic_load(&t->dropped);
}

/* In the child after fork: the inherited uffd belongs to the parent's mm and
 * the child's pages lost their write-protection, so everything is made anew:
 * a fresh uffd, register, protect; the parent's unread events are dropped. */
static void rearm_child(struct eternal_trap *t)
{
	bool rearm = !(t->flags & ETERNAL_TRAP_NO_REARM);
	int rc = 0;
	if (!atomic_load(&t->armed))
		return;
	atomic_store(&t->armed, 0);
	atomic_store(&t->pid, getpid());
	t->thr_running = t->wthr_running = false; /* threads do not survive fork */
	atomic_store(&t->wstop, 0);
	pthread_mutex_init(&t->wmu, NULL);
	ring_reset(&t->ring);
	t->hist_head = t->hist_count = 0;
	atomic_store(&t->seq, 0);
	atomic_store(&t->dropped, 0);
	for (int k = 0; k < ETERNAL_NTIERS; k++) {
		atomic_store(&t->writes[k], 0);
		if (t->rng[k].seen)
			memset((void *)t->rng[k].seen, 0, t->rng[k].seen_len);
	}
	if (t->uffd >= 0) {
		close(t->uffd);
		t->uffd = -1;
	}
	if (t->pagemap_fd >= 0) {
		close(t->pagemap_fd);
		t->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	}
	atomic_store(&t->wsleep, 0);
	if (t->wake_fd >= 0) {
		close(t->wake_fd);
		t->wake_fd = eventfd(0, EFD_CLOEXEC);
	}
	if (t->log_dir && open_log(t) < 0 && t->log_fd >= 0) {
		close(t->log_fd); /* never append the child's records to the parent's file */
		t->log_fd = -1;
	}
	if (t->mode == ETERNAL_MODE_STRICT) {
		atomic_store(&t->armed, 1);
		return;
	}
	if (!rearm) {
		/* the caller opted out: leave the child's pages writable, untracked */
		if (t->engine == ETERNAL_ENGINE_MPROTECT)
			disarm(t);
		for (int k = 0; k < ETERNAL_NTIERS; k++)
			atomic_store(&t->rng[k].hi, atomic_load(&t->rng[k].lo));
		return;
	}
	if (t->features) {
		rc = open_uffd_for(t);
		if (rc >= 0) {
			t->uffd = rc;
			rc = 0;
		}
	}
	if (rc == 0)
		rc = arm_all(t);
	if (rc == 0)
		rc = start_threads(t);
	if (rc < 0) {
		_eternal_log(ETERNAL_LOG_ERROR, "trap: re-arm in child %d failed: %s", (int)getpid(), strerror(-rc));
		return;
	}
	atomic_store(&t->armed, 1);
}

static void atfork_child(void)
{
	pthread_mutex_init(&g_mu, NULL);
	for (int i = 0; i < MAX_TRAPS; i++) {
		struct eternal_trap *t = atomic_load(&g_traps[i]);
		if (t)
			rearm_child(t);
	}
}

/* ------------------------------------------------------------------ */
/* Public read side */

ETERNAL_API int eternal_trap_read(eternal_region *r, struct eternal_trap_event *buf, size_t cap)
{
	int rc;
	if (!r || (cap && !buf))
		return -EINVAL;
	if ((rc = _eternal_check(r)) < 0)
		return rc;
	struct eternal_trap *t = r->trap;
	if (!t || t->mode == ETERNAL_MODE_AUDIT)
		return -ENOTSUP;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	size_t n = 0;
	if (t->wake_fd >= 0) {
		/* log first, so what the caller reads is already on disk */
		pthread_mutex_lock(&t->wmu);
		drain_locked(t);
		for (; n < cap && t->hist_count; n++) {
			buf[n] = t->hist[t->hist_head];
			t->hist_head = (t->hist_head + 1) % t->hist_cap;
			t->hist_count--;
		}
		pthread_mutex_unlock(&t->wmu);
		return (int)n;
	}
	struct uw_ctx ctx;
	while (n < cap && ring_pop(&t->ring, &buf[n], &ctx)) {
		unwind_event(&buf[n], &ctx);
		n++;
	}
	return (int)n;
}

/* For audit.c: the pagemap fd and armed ranges. */
ETERNAL_HIDDEN int _eternal_trap_audit_ctx(const struct eternal_region *r, int *pagemap_fd,
					   uintptr_t lo[ETERNAL_NTIERS], uintptr_t hi[ETERNAL_NTIERS],
					   size_t psz[ETERNAL_NTIERS])
{
	const struct eternal_trap *t = r->trap;
	if (!t || t->mode != ETERNAL_MODE_AUDIT || !atomic_load(&t->armed))
		return -ENOTSUP;
	*pagemap_fd = t->pagemap_fd;
	for (int k = 0; k < ETERNAL_NTIERS; k++) {
		lo[k] = atomic_load(&t->rng[k].lo);
		hi[k] = atomic_load(&t->rng[k].hi);
		psz[k] = t->rng[k].psz ? t->rng[k].psz : (size_t)g_page;
	}
	return t->pagemap_fd >= 0 ? 0 : -EBADF;
}
