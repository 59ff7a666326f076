/* cowtrace.h - record format and ioctls of /dev/cowtrace, shared by the kernel module and its readers.
 * Only fixed-size __u32/__u64 fields so the layout is the same for every compiler and both sides. */
#ifndef COWTRACE_H
#define COWTRACE_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define COWTRACE_DEVICE "/dev/cowtrace"
/* Bumped whenever struct cowtrace_record or the ioctls change meaning. */
#define COWTRACE_ABI_VERSION 1

/* cowtrace_record.flags */
#define COWTRACE_F_USER      (1u << 0) /* the write came from user mode (ip is the faulting instruction) */
#define COWTRACE_F_ZERO_PAGE (1u << 1) /* the source was the shared zero page, not a page inherited by fork */
#define COWTRACE_F_UNSHARE   (1u << 2) /* unshare request (GUP pin of a shared anon page), not a write */
#define COWTRACE_F_REMOTE    (1u << 3) /* written by another process (ptrace, /proc/PID/mem): tid and ip are the writer's */
#define COWTRACE_F_NO_PAGE   (1u << 4) /* no struct page behind the old pte (zero page or raw PFN mapping) */

/*
 * One copy-on-write break; read(2) returns whole records only, oldest first.
 * seq counts every break the module saw for traced processes, stored or dropped,
 * so a gap in seq between two records is exactly the number of records dropped there.
 */
struct cowtrace_record {
	__u64 seq;      /* 0, 1, 2, ... since the module was loaded */
	__u64 time_ns;  /* CLOCK_MONOTONIC (ktime_get_ns) at the start of the copy */
	__u64 addr;     /* page-aligned virtual address that was copied */
	__u64 ip;       /* user instruction pointer of the writing thread (its syscall's ip for kernel-side writes) */
	__u32 pid;      /* process (thread group id) whose page was copied, initial pid namespace */
	__u32 tid;      /* thread that wrote, initial pid namespace */
	__u32 flags;    /* COWTRACE_F_* */
	__u32 offset;   /* byte offset of the faulting access inside the page */
};

struct cowtrace_stats {
	__u32 abi_version;    /* COWTRACE_ABI_VERSION of the loaded module */
	__u32 record_size;    /* sizeof(struct cowtrace_record) of the loaded module */
	__u64 capacity;       /* records the buffer holds (module parameter buffer_records) */
	__u64 queued;         /* records waiting to be read */
	__u64 recorded;       /* records stored since load */
	__u64 dropped;        /* records lost since load because the buffer was full */
	__u64 traced;         /* processes currently in the traced set */
	__u64 untraced_forks; /* children of traced processes not added: set full (max_traced) */
	__u64 missed;         /* kprobe hits the kernel skipped (recursion); should stay 0 */
	__u64 armed;          /* 1 while the kprobe and tracepoints are installed */
};

#define COWTRACE_IOC_MAGIC 0xCB
/* Trace a process (any thread id is mapped to its process), its live descendants and all later ones.
 * Errors: ESRCH no such process (in the caller's pid namespace) or it is exiting; EINVAL pid <= 0 or a
 * kernel thread; ENOSPC traced set full; EPERM without CAP_SYS_ADMIN. Returns the number of processes added. */
#define COWTRACE_IOC_ADD_PID _IOW(COWTRACE_IOC_MAGIC, 1, __s32)
/* Stop tracing one process (not its descendants). ESRCH if it was not traced. */
#define COWTRACE_IOC_DEL_PID _IOW(COWTRACE_IOC_MAGIC, 2, __s32)
/* Stop tracing everything; hooks are removed. Queued records stay readable. */
#define COWTRACE_IOC_CLEAR   _IO(COWTRACE_IOC_MAGIC, 3)
#define COWTRACE_IOC_STATS   _IOR(COWTRACE_IOC_MAGIC, 4, struct cowtrace_stats)

#endif /* COWTRACE_H */
