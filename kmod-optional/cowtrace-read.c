/* cowtrace-read.c - user-space reader of /dev/cowtrace: selects the processes to trace, prints one line
 * per copy-on-write break with the ip symbolized through libdw and the page's mapping, optionally cowmap's class. */
#define _GNU_SOURCE
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cowtrace.h"

static const char *prog = "cowtrace-read";

/* One line of /proc/PID/maps. */
struct mapping {
	uint64_t start, end, offset;
	char perms[5];
	char *path; /* NULL for anonymous */
};

/* What we know of one process's address space: its maps, re-read when a lookup misses. */
struct proc {
	uint32_t pid;
	struct proc *borrow; /* the process was gone when first seen: use the root's view instead */
	struct mapping *maps;
	size_t nmaps;
	Dwfl *dwfl;
	uint64_t xsig;      /* signature of the executable mappings behind dwfl */
	uint64_t refreshed; /* batch number of the last re-read, so a miss re-reads at most once a batch */
	struct proc *next;
};

static struct proc *procs;
static struct proc *root_proc;
/* First process traced (-p or the COMMAND): the prefork master whose object dump classifies pages. */
static uint32_t root_pid;
/* Incremented for every batch of records read from the device. */
static uint64_t batch;

static const Dwfl_Callbacks dwfl_cbs = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

static int read_maps(uint32_t pid, struct mapping **out, size_t *nout)
{
	char fn[64], line[PATH_MAX + 128];
	struct mapping *m = NULL;
	size_t n = 0, cap = 0;
	FILE *f;

	snprintf(fn, sizeof(fn), "/proc/%u/maps", pid);
	f = fopen(fn, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		struct mapping x = { 0 };
		int pathpos = 0;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %*s %*s %n", &x.start, &x.end, x.perms,
			   &x.offset, &pathpos) < 4)
			continue;
		line[strcspn(line, "\n")] = 0;
		if (pathpos && line[pathpos])
			x.path = strdup(line + pathpos);
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			m = realloc(m, cap * sizeof(*m));
			if (!m)
				abort();
		}
		m[n++] = x;
	}
	fclose(f);
	if (!n)
		return -ESRCH; /* zombie or kernel thread: no mm */
	*out = m;
	*nout = n;
	return 0;
}

/* Load bias of a mapped ELF: address of the mapping minus the link-time address of that file offset. */
static int elf_bias(const char *path, uint64_t start, uint64_t offset, GElf_Addr *bias, bool *is_exec)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = -ENOENT;
	Elf *elf;
	GElf_Ehdr eh;
	size_t phnum;

	if (fd < 0)
		return -errno;
	elf = elf_begin(fd, ELF_C_READ, NULL);
	if (elf && gelf_getehdr(elf, &eh) && !elf_getphdrnum(elf, &phnum)) {
		*is_exec = eh.e_type == ET_EXEC;
		for (size_t i = 0; i < phnum; i++) {
			GElf_Phdr ph;

			if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
				continue;
			if (offset >= (ph.p_offset & ~4095ULL) && offset < ph.p_offset + ph.p_filesz) {
				*bias = start - (ph.p_vaddr - ph.p_offset + offset);
				ret = 0;
				break;
			}
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
	return ret;
}

static void free_maps(struct mapping *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].path);
	free(m);
}

static uint64_t exec_signature(const struct mapping *m, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++) {
		if (!m[i].path || m[i].perms[2] != 'x')
			continue;
		h = (h ^ m[i].start) * 1099511628211ULL;
		for (const char *c = m[i].path; *c; c++)
			h = (h ^ (unsigned char)*c) * 1099511628211ULL;
	}
	return h;
}

static void proc_report_modules(struct proc *p)
{
	if (p->dwfl)
		dwfl_end(p->dwfl);
	p->xsig = exec_signature(p->maps, p->nmaps);
	p->dwfl = dwfl_begin(&dwfl_cbs);
	if (!p->dwfl)
		return;
	dwfl_report_begin(p->dwfl);
	for (size_t i = 0; i < p->nmaps; i++) {
		struct mapping *m = &p->maps[i];
		GElf_Addr bias = 0;
		bool is_exec = false, seen = false;

		if (!m->path || m->path[0] != '/' || m->perms[2] != 'x')
			continue;
		for (size_t j = 0; j < i; j++)
			seen |= p->maps[j].path && p->maps[j].perms[2] == 'x' && !strcmp(p->maps[j].path, m->path);
		if (seen || elf_bias(m->path, m->start, m->offset, &bias, &is_exec) < 0)
			continue;
		/* add_p_vaddr: the module starts at bias + first PT_LOAD vaddr, for ET_EXEC bias is 0. */
		dwfl_report_elf(p->dwfl, basename(m->path), m->path, -1, is_exec ? 0 : bias, true);
	}
	dwfl_report_end(p->dwfl, NULL, NULL);
}

/* Re-read the maps of a live process (it may have mapped more since); 0 if they were replaced. */
static int proc_refresh(struct proc *p)
{
	struct mapping *maps;
	size_t n;

	if (p->refreshed == batch || read_maps(p->pid, &maps, &n) < 0)
		return -1;
	p->refreshed = batch;
	free_maps(p->maps, p->nmaps);
	p->maps = maps;
	p->nmaps = n;
	if (exec_signature(maps, n) != p->xsig)
		proc_report_modules(p);
	return 0;
}

/* The process's view; a process already gone borrows the root's (prefork children share its layout). */
static struct proc *proc_get(uint32_t pid)
{
	struct proc *p;

	for (p = procs; p; p = p->next)
		if (p->pid == pid)
			return p->borrow ? p->borrow : p;
	p = calloc(1, sizeof(*p));
	if (!p)
		abort();
	p->pid = pid;
	p->refreshed = batch;
	if (read_maps(pid, &p->maps, &p->nmaps) < 0) {
		if (!root_proc) {
			free(p);
			return NULL;
		}
		p->borrow = root_proc;
	} else {
		proc_report_modules(p);
	}
	p->next = procs;
	procs = p;
	return p->borrow ? p->borrow : p;
}

static const struct mapping *find_mapping(const struct proc *p, uint64_t addr)
{
	for (size_t i = 0; p && i < p->nmaps; i++)
		if (addr >= p->maps[i].start && addr < p->maps[i].end)
			return &p->maps[i];
	return NULL;
}

static void print_symbol(const struct proc *p, uint64_t ip)
{
	Dwfl_Module *mod = p && p->dwfl ? dwfl_addrmodule(p->dwfl, ip) : NULL;
	const char *name = NULL, *modname = NULL, *src = NULL;
	GElf_Off off = 0;
	GElf_Sym sym;
	int line = 0;

	if (mod) {
		Dwfl_Line *l;

		modname = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
		name = dwfl_module_addrinfo(mod, ip, &off, &sym, NULL, NULL, NULL);
		l = dwfl_module_getsrc(mod, ip);
		if (l)
			src = dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL);
	}
	if (name)
		printf(" sym=%s+%#" PRIx64, name, (uint64_t)off);
	else
		printf(" sym=?");
	printf(" obj=%s", modname ? modname : "?");
	if (src)
		printf(" src=%s:%d", basename((char *)src), line);
}

/* Optional classification through bench/cowmap.py, run in a python3 helper that answers one line per query. */
static FILE *cls_in, *cls_out;

static void classify_start(const char *cowmap, const char *self_dir)
{
	char shim[PATH_MAX + 32], ready[256];
	int to[2], from[2];
	pid_t pid;

	if (access(cowmap, R_OK) < 0) {
		fprintf(stderr, "%s: classification skipped: %s not found (bench/cowmap.py not written yet?)\n", prog,
			cowmap);
		return;
	}
	snprintf(shim, sizeof(shim), "%s/cowmap-classify.py", self_dir);
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		execlp("python3", "python3", shim, cowmap, (char *)NULL);
		fprintf(stderr, "%s: cannot run python3 %s: %s\n", prog, shim, strerror(errno));
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	cls_in = fdopen(to[1], "w");
	cls_out = fdopen(from[0], "r");
	if (!cls_out || !fgets(ready, sizeof(ready), cls_out) || strncmp(ready, "READY", 5)) {
		ready[strcspn(ready, "\n")] = 0;
		fprintf(stderr, "%s: classification skipped: %s\n", prog,
			cls_out && ready[0] ? ready : "cowmap helper did not start");
		if (cls_in)
			fclose(cls_in);
		if (cls_out)
			fclose(cls_out);
		cls_in = cls_out = NULL;
	}
}

static void print_class(uint32_t pid, uint64_t addr)
{
	char ans[256];

	if (!cls_in)
		return;
	fprintf(cls_in, "%u %u %#" PRIx64 "\n", root_pid ? root_pid : pid, pid, addr);
	fflush(cls_in);
	if (!fgets(ans, sizeof(ans), cls_out)) {
		fclose(cls_in);
		cls_in = NULL;
		return;
	}
	ans[strcspn(ans, "\n")] = 0;
	printf(" class=%s", ans);
}

static const char *flag_names[] = { "user", "zero", "unshare", "remote", "nopage" };

static void print_record(const struct cowtrace_record *r, bool symbolize)
{
	struct proc *p = symbolize ? proc_get(r->pid) : NULL;
	const struct mapping *m = find_mapping(p, r->addr);
	bool first = true;

	/* A miss usually means the process mapped it after we last looked. */
	if (p && (!m || !p->dwfl || !dwfl_addrmodule(p->dwfl, r->ip)) && proc_refresh(p) == 0)
		m = find_mapping(p, r->addr);

	printf("REC seq=%" PRIu64 " t=%" PRIu64 ".%09" PRIu64 " pid=%u tid=%u addr=%#" PRIx64 " off=%u ip=%#" PRIx64
	       " flags=",
	       (uint64_t)r->seq, (uint64_t)r->time_ns / 1000000000, (uint64_t)r->time_ns % 1000000000, r->pid, r->tid,
	       (uint64_t)r->addr, r->offset, (uint64_t)r->ip);
	for (unsigned i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
		if (r->flags & (1u << i)) {
			printf("%s%s", first ? "" : ",", flag_names[i]);
			first = false;
		}
	if (first)
		printf("-");
	if (symbolize) {
		print_symbol(p, r->ip);
		printf(" region=%s", !m ? "?" : m->path ? m->path : "anon");
		if (p && p->pid != r->pid)
			printf(" maps=%u", p->pid);
	}
	print_class(r->pid, r->addr);
	putchar('\n');
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int get_stats(int fd, struct cowtrace_stats *st)
{
	return ioctl(fd, COWTRACE_IOC_STATS, st) < 0 ? -errno : 0;
}

static int add_pid(int fd, int pid)
{
	int ret = ioctl(fd, COWTRACE_IOC_ADD_PID, &pid);

	if (ret >= 0)
		return ret;
	ret = -errno;
	if (ret == -ESRCH)
		fprintf(stderr, "%s: pid %d: no such process\n", prog, pid);
	else if (ret == -EINVAL)
		fprintf(stderr, "%s: pid %d: not a user process\n", prog, pid);
	else
		fprintf(stderr, "%s: cannot trace pid %d: %s\n", prog, pid, strerror(-ret));
	return ret;
}

/* Fallback when the command could not be stopped at exec: poll until its binary shows in its maps. */
static void snapshot_root(pid_t pid)
{
	char exe[64], target[PATH_MAX];
	ssize_t n;

	snprintf(exe, sizeof(exe), "/proc/%d/exe", pid);
	for (int i = 0; i < 1000; i++) {
		struct mapping *maps;
		size_t nmaps;
		bool has = false;

		n = readlink(exe, target, sizeof(target) - 1);
		if (n > 0 && read_maps((uint32_t)pid, &maps, &nmaps) == 0) {
			target[n] = 0;
			for (size_t k = 0; k < nmaps; k++)
				has |= maps[k].path && !strcmp(maps[k].path, target) && maps[k].perms[2] == 'x';
			free_maps(maps, nmaps);
			if (has) {
				root_proc = proc_get((uint32_t)pid);
				return;
			}
		}
		usleep(5000);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [options] -p PID [-p PID...]\n"
		"       %s [options] -- COMMAND [ARGS...]\n"
		"Trace copy-on-write breaks of processes and their descendants; one REC line per break.\n"
		"  -p PID          trace PID and its descendants (repeatable)\n"
		"  -t SECONDS      stop after SECONDS (default: when every traced process has exited)\n"
		"  -n              no symbolization\n"
		"  --classify      classify pages with bench/cowmap.py (if present)\n"
		"  --cowmap PATH   path of cowmap.py (default: $COWTRACE_COWMAP or ../bench/cowmap.py next to this tool)\n"
		"Exit: 0 ok, 1 runtime error, 2 bad usage or pid; the COMMAND's status is not propagated.\n",
		prog, prog);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "classify", no_argument, NULL, 'c' }, { "cowmap", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },     { NULL, 0, NULL, 0 },
	};
	int pids[64], npids = 0, opt, fd, exec_pipe[2], go_pipe[2];
	bool symbolize = true, classify = false;
	const char *cowmap = getenv("COWTRACE_COWMAP");
	char self_dir[PATH_MAX], defmap[PATH_MAX + 32];
	double timeout = 0;
	struct cowtrace_stats st, st0;
	struct cowtrace_record buf[256];
	uint64_t nread = 0;
	struct timespec t0;
	pid_t child = 0;
	ssize_t n;

	while ((opt = getopt_long(argc, argv, "+p:t:nh", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (npids == 64 || atoi(optarg) <= 0) {
				fprintf(stderr, "%s: bad pid %s\n", prog, optarg);
				return 2;
			}
			pids[npids++] = atoi(optarg);
			break;
		case 't': timeout = atof(optarg); break;
		case 'n': symbolize = false; break;
		case 'c': classify = true; break;
		case 'm': cowmap = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!npids && optind >= argc) {
		usage(stderr);
		return 2;
	}
	/* Whole lines per write: the traced COMMAND may share our stdout, and a live tail sees each record. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	n = readlink("/proc/self/exe", self_dir, sizeof(self_dir) - 1);
	self_dir[n > 0 ? n : 0] = 0;
	dirname(self_dir);
	if (classify) {
		if (!cowmap) {
			snprintf(defmap, sizeof(defmap), "%s/../bench/cowmap.py", self_dir);
			cowmap = defmap;
		}
		classify_start(cowmap, self_dir);
	}

	fd = open(COWTRACE_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (e == ENOENT)
			fprintf(stderr, "%s: %s missing: load the module (insmod cowtrace.ko)\n", prog, COWTRACE_DEVICE);
		else if (e == EBUSY)
			fprintf(stderr, "%s: %s: another reader has it open (one reader at a time)\n", prog,
				COWTRACE_DEVICE);
		else
			fprintf(stderr, "%s: %s: %s\n", prog, COWTRACE_DEVICE, strerror(e));
		return 1;
	}
	if (get_stats(fd, &st) < 0 || st.abi_version != COWTRACE_ABI_VERSION ||
	    st.record_size != sizeof(struct cowtrace_record)) {
		fprintf(stderr, "%s: module ABI %u/record %u, this reader expects %u/%zu\n", prog, st.abi_version,
			st.record_size, COWTRACE_ABI_VERSION, sizeof(struct cowtrace_record));
		return 1;
	}
	/* Records queued before this session (another reader's leftovers) are still printed and counted
	 * as read; recorded/dropped in SUMMARY are this session's. */
	st0 = st;
	st0.recorded -= st.queued;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	for (int i = 0; i < npids; i++) {
		if (add_pid(fd, pids[i]) < 0) {
			ioctl(fd, COWTRACE_IOC_CLEAR);
			return 2;
		}
		if (!root_pid)
			root_pid = (uint32_t)pids[i];
		if (symbolize && !root_proc)
			root_proc = proc_get((uint32_t)pids[i]);
	}
	if (optind < argc) {
		/* The command waits on go_pipe until it is traced, so even its first write is seen. */
		char c;

		if (pipe2(go_pipe, O_CLOEXEC) < 0 || pipe2(exec_pipe, O_CLOEXEC) < 0)
			return 1;
		child = fork();
		if (child < 0)
			return 1;
		if (child == 0) {
			close(fd);
			if (read(go_pipe[0], &c, 1) != 1)
				_exit(127);
			/* Stop right after exec so the root's maps are read while it surely lives: its
			 * exited children are symbolized with them later. 'T': we will stop, 'N': we won't. */
			c = ptrace(PTRACE_TRACEME, 0, NULL, NULL) == 0 ? 'T' : 'N';
			(void)!write(exec_pipe[1], &c, 1);
			execvp(argv[optind], argv + optind);
			fprintf(stderr, "%s: exec %s: %s\n", prog, argv[optind], strerror(errno));
			_exit(127);
		}
		close(go_pipe[0]);
		close(exec_pipe[1]);
		if (add_pid(fd, child) < 0) {
			kill(child, SIGKILL);
			return 1;
		}
		if (!root_pid)
			root_pid = (uint32_t)child;
		(void)!write(go_pipe[1], "g", 1);
		close(go_pipe[1]);
		if (read(exec_pipe[0], &c, 1) == 1 && c == 'T') {
			int status;

			/* The exec's SIGTRAP stop (or the child's death if exec failed). */
			if (waitpid(child, &status, 0) == child && WIFSTOPPED(status)) {
				if (symbolize)
					root_proc = proc_get((uint32_t)child);
				ptrace(PTRACE_DETACH, child, NULL, NULL);
			} else if (WIFEXITED(status) || WIFSIGNALED(status)) {
				child = 0;
			}
		} else if (symbolize) {
			/* EOF on the close-on-exec pipe: the exec happened (or failed). */
			while (read(exec_pipe[0], &c, 1) > 0)
				;
			snapshot_root(child);
		}
		close(exec_pipe[0]);
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		struct timespec t;

		while ((n = read(fd, buf, sizeof(buf))) > 0) {
			batch++;
			for (ssize_t i = 0; i < n / (ssize_t)sizeof(buf[0]); i++)
				print_record(&buf[i], symbolize);
			nread += (uint64_t)n / sizeof(buf[0]);
		}
		fflush(stdout);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			fprintf(stderr, "%s: read: %s\n", prog, strerror(errno));
			break;
		}
		if (child && waitpid(child, NULL, WNOHANG) == child)
			child = 0;
		if (stop || get_stats(fd, &st) < 0)
			break;
		if (!child && !st.traced && !st.queued)
			break; /* everything traced has exited and all its records are printed */
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (timeout > 0 && (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= timeout)
			break;
		poll(&pfd, 1, 200);
	}
	/* The tracing session belongs to this reader: leave no hooks behind. */
	ioctl(fd, COWTRACE_IOC_CLEAR);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(buf[0]); i++)
			print_record(&buf[i], symbolize);
		nread += (uint64_t)n / sizeof(buf[0]);
	}
	get_stats(fd, &st);
	/* The kernel's counters run since load: report what happened during this session. */
	printf("SUMMARY read=%" PRIu64 " recorded=%llu dropped=%llu untraced_forks=%llu missed=%llu\n", nread,
	       (unsigned long long)(st.recorded - st0.recorded), (unsigned long long)(st.dropped - st0.dropped),
	       (unsigned long long)(st.untraced_forks - st0.untraced_forks), (unsigned long long)st.missed);
	if (st.dropped != st0.dropped)
		fprintf(stderr, "%s: %llu records dropped (buffer of %llu full): load with a larger buffer_records\n",
			prog, (unsigned long long)(st.dropped - st0.dropped), (unsigned long long)st.capacity);
	close(fd);
	return 0;
}
