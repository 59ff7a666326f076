/* symbolize.c - eternal_symbolize(): a PC to "symbol+0xoff (module)" with
 * elfutils' libdwfl, for the log writer and callers; never from a signal handler. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>

#if !__has_include(<elfutils/libdwfl.h>)
/* Built without elfutils: PCs stay numbers in the log. */
ETERNAL_API int eternal_symbolize(uint64_t pc, char *buf, size_t len)
{
	(void)pc;
	(void)buf;
	(void)len;
	return -EOPNOTSUPP;
}

ETERNAL_HIDDEN int _eternal_unwind(pid_t tid, const uint64_t *regs, unsigned nregs, const void *stack,
				   size_t len, uint64_t *frames, int max)
{
	(void)tid, (void)regs, (void)nregs, (void)stack, (void)len, (void)frames, (void)max;
	return 0;
}
#else
#include <elfutils/libdwfl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/uio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t g_sym_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_sym_once = PTHREAD_ONCE_INIT;
static Dwfl *g_dwfl;
static pid_t g_dwfl_pid;
static uint64_t g_report_ns; /* when /proc/PID/maps was last read */
static uint64_t g_gen = 1;     /* bumped by every report(): cached answers expire */

static char *g_debuginfo_path;
static const Dwfl_Callbacks g_cb = {
	.find_elf = dwfl_linux_proc_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.debuginfo_path = &g_debuginfo_path,
};

/* The child inherits a session that may be half-updated by a parent thread:
 * forget it (leaked, never freed) and start afresh on first use. */
static bool g_attached; /* g_dwfl has our thread callbacks */

static void sym_atfork_child(void)
{
	pthread_mutex_init(&g_sym_mu, NULL);
	g_dwfl = NULL;
	g_attached = false;
}

static void sym_once(void)
{
	pthread_atfork(NULL, NULL, sym_atfork_child);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The loader's module list, for when /proc/PID/maps is unreadable: a process
 * that dropped root (setuid) is not dumpable, and its /proc files are root's. */
static int phdr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	char exe[4096];
	const char *path = info->dlpi_name;
	(void)size;
	if (!path || !*path) {
		/* the main program: its path from the exec, as the loader saw it */
		const char *fn = (const char *)getauxval(AT_EXECFN);
		if (!fn || !realpath(fn, exe))
			return 0;
		path = exe;
	}
	if (access(path, R_OK) == 0)
		dwfl_report_elf(arg, path, path, -1, info->dlpi_addr, false);
	return 0;
}

/* (Re)read the module list: modules dlopen()ed since the last report appear. */
static int report(void)
{
	pid_t pid = getpid();
	if (!g_dwfl) {
		g_dwfl = dwfl_begin(&g_cb);
		if (!g_dwfl)
			return -ENOMEM;
		g_attached = false;
	}
	dwfl_report_begin(g_dwfl);
	int rc = dwfl_linux_proc_report(g_dwfl, pid);
	if (rc != 0) {
		dl_iterate_phdr(phdr_cb, g_dwfl);
		rc = 0;
	}
	dwfl_report_end(g_dwfl, NULL, NULL);
	g_report_ns = now_ns();
	g_gen++;
	if (rc != 0)
		return rc > 0 ? -rc : -EIO;
	g_dwfl_pid = pid;
	return 0;
}

static const char *base_name(const char *p)
{
	const char *s = p ? strrchr(p, '/') : NULL;
	return s ? s + 1 : p ? p : "?";
}

/* Resolve under g_sym_mu into @buf (len > 0). */
static int resolve(uint64_t pc, char *buf, size_t len)
{
	int rc = 0;
	if (!g_dwfl || g_dwfl_pid != getpid())
		rc = report();
	Dwfl_Module *m = rc == 0 ? dwfl_addrmodule(g_dwfl, (Dwarf_Addr)pc) : NULL;
	/* an address in no module: maybe a library loaded since; but a JIT
	 * area would make every miss re-read the maps, so at most once a second */
	if (!m && rc == 0 && now_ns() - g_report_ns > 1000000000ull && report() == 0)
		m = dwfl_addrmodule(g_dwfl, (Dwarf_Addr)pc);
	if (!m)
		return rc < 0 ? rc : -ENOENT;
	Dwarf_Addr start = 0;
	const char *mod = dwfl_module_info(m, NULL, &start, NULL, NULL, NULL, NULL, NULL);
	GElf_Off off = 0;
	GElf_Sym sym;
	const char *name = dwfl_module_addrinfo(m, (GElf_Addr)pc, &off, &sym, NULL, NULL, NULL);
	int n;
	if (name)
		n = snprintf(buf, len, "%s+0x%lx (%s)", name, (unsigned long)off, base_name(mod));
	else
		n = snprintf(buf, len, "?? (%s+0x%lx)", base_name(mod), (unsigned long)(pc - start));
	if (n < 0)
		return -EIO;
	if (!name)
		return -ENOENT;
	return (size_t)n < len ? n : (int)len - 1;
}

/* The same few PCs write over and over (a refcount increment, a cache fill):
 * remember answers, until the module list is read again. */
#define SYM_CACHE 1024
struct sym_ent {
	uint64_t pc, gen;
	int rc;
	char s[200];
};
static struct sym_ent *g_cache;

ETERNAL_API int eternal_symbolize(uint64_t pc, char *buf, size_t len)
{
	if (!buf || !len || !pc)
		return -EINVAL;
	pthread_once(&g_sym_once, sym_once);
	pthread_mutex_lock(&g_sym_mu);
	if (!g_cache)
		g_cache = calloc(SYM_CACHE, sizeof(*g_cache));
	struct sym_ent *e = g_cache ? &g_cache[(pc * 0x9e3779b97f4a7c15ull) >> 54] : NULL;
	int rc;
	if (e && e->pc == pc && e->gen == g_gen && g_dwfl_pid == getpid()) {
		rc = e->rc;
		snprintf(buf, len, "%s", e->s);
	} else {
		char tmp[sizeof(e->s)];
		rc = resolve(pc, tmp, sizeof(tmp));
		snprintf(buf, len, "%s", rc > 0 || rc == -ENOENT ? tmp : "");
		if (e && (rc > 0 || rc == -ENOENT)) {
			e->pc = pc;
			e->gen = g_gen;
			e->rc = rc;
			memcpy(e->s, tmp, sizeof(tmp));
		}
	}
	pthread_mutex_unlock(&g_sym_mu);
	if (rc > 0)
		rc = (int)strlen(buf);
	return rc;
}
/* ------------------------------------------------------------------ */
/* Unwinding a captured stack. libdwfl asks for one thread's registers and
 * for memory; the stack comes from the copy taken in the signal handler (the
 * live one has moved on since), anything else (a module's data) from the
 * process itself through process_vm_readv, which fails instead of faulting. */

struct uw_state {
	pid_t tid;
	const uint64_t *regs;
	unsigned nregs;
	const uint8_t *stack;
	uint64_t sp;
	size_t len;
};
static struct uw_state *g_uw; /* the stack being unwound, under g_sym_mu */

static pid_t uw_next_thread(Dwfl *dwfl, void *arg, void **thread_argp)
{
	(void)dwfl;
	(void)arg;
	if (*thread_argp || !g_uw)
		return 0;
	*thread_argp = g_uw;
	return g_uw->tid;
}

static bool uw_get_thread(Dwfl *dwfl, pid_t tid, void *arg, void **thread_argp)
{
	(void)dwfl;
	(void)arg;
	*thread_argp = g_uw;
	return g_uw && tid == g_uw->tid;
}

static bool uw_memory_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result, void *arg)
{
	(void)dwfl;
	(void)arg;
	if (!g_uw)
		return false;
	if (addr >= g_uw->sp && addr + sizeof(*result) <= g_uw->sp + g_uw->len) {
		memcpy(result, g_uw->stack + (addr - g_uw->sp), sizeof(*result));
		return true;
	}
	if (addr >= g_uw->sp && addr - g_uw->sp < (64u << 20))
		return false; /* deeper in the stack than the copy: stale by now */
	struct iovec l = { result, sizeof(*result) }, r = { (void *)(uintptr_t)addr, sizeof(*result) };
	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)sizeof(*result);
}

static bool uw_set_initial_registers(Dwfl_Thread *thread, void *thread_arg)
{
	const struct uw_state *u = thread_arg;
	Dwarf_Word regs[32];
	if (!u || u->nregs > 32)
		return false;
	for (unsigned i = 0; i < u->nregs; i++)
		regs[i] = u->regs[i];
	return dwfl_thread_state_registers(thread, 0, u->nregs, regs);
}

static const Dwfl_Thread_Callbacks g_uw_cb = {
	.next_thread = uw_next_thread,
	.get_thread = uw_get_thread,
	.memory_read = uw_memory_read,
	.set_initial_registers = uw_set_initial_registers,
};

struct uw_out {
	uint64_t *frames;
	int n, max;
	bool first;
};

static int uw_frame(Dwfl_Frame *state, void *arg)
{
	struct uw_out *o = arg;
	Dwarf_Addr pc;
	bool activation;
	if (!dwfl_frame_pc(state, &pc, &activation) || !pc)
		return DWARF_CB_ABORT;
	if (o->first) { /* the faulting instruction itself: ev->pc has it */
		o->first = false;
		return DWARF_CB_OK;
	}
	o->frames[o->n++] = pc;
	return o->n < o->max ? DWARF_CB_OK : DWARF_CB_ABORT;
}

ETERNAL_HIDDEN int _eternal_unwind(pid_t tid, const uint64_t *regs, unsigned nregs, const void *stack,
				   size_t len, uint64_t *frames, int max)
{
#if defined(__x86_64__)
	struct uw_state u = { tid, regs, nregs, stack, regs[7] /* rsp */, len };
	struct uw_out o = { frames, 0, max, true };
	if (tid <= 0 || max <= 0 || nregs != 17)
		return 0;
	pthread_once(&g_sym_once, sym_once);
	pthread_mutex_lock(&g_sym_mu);
	if (!g_dwfl || g_dwfl_pid != getpid())
		report();
	if (g_dwfl && !g_attached)
		g_attached = dwfl_attach_state(g_dwfl, NULL, getpid(), &g_uw_cb, NULL);
	if (g_attached) {
		g_uw = &u;
		dwfl_getthread_frames(g_dwfl, tid, uw_frame, &o);
		g_uw = NULL;
	}
	pthread_mutex_unlock(&g_sym_mu);
	return o.n;
#else
	(void)tid, (void)regs, (void)nregs, (void)stack, (void)len, (void)frames, (void)max;
	return 0;
#endif
}
#endif
