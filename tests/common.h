/* common.h - small helpers shared by the C test programs: checks that report
 * file and line, skips with a reason, and readers for /proc memory figures. */
#ifndef ETERNAL_TEST_COMMON_H
#define ETERNAL_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(T_FAIL);                                                \
		}                                                                    \
	} while (0)

/* Check an int result against an expected value, printing both. */
#define CHECK_RC(expr, want)                                                        \
	do {                                                                        \
		long _rc = (long)(expr), _want = (long)(want);                      \
		if (_rc != _want) {                                                 \
			fprintf(stderr, "%s:%d: %s returned %ld, expected %ld\n",   \
				__FILE__, __LINE__, #expr, _rc, _want);             \
			exit(T_FAIL);                                               \
		}                                                                   \
	} while (0)

/* Skip because the kernel lacks a feature; ETERNAL_TEST_NO_SKIP=1 turns the
 * skip into a failure on machines known to have it. */
void t_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Sum one field (e.g. "Private_Dirty") over the VMAs of /proc/PID/smaps
 * whose path contains @name; in kB, -1 on error. */
long t_smaps_kb(pid_t pid, const char *name, const char *field);

/* Sum one field over the VMAs of /proc/PID/smaps inside [lo, hi); kB. */
long t_smaps_range_kb(pid_t pid, unsigned long lo, unsigned long hi, const char *field);

/* Run @fn in a forked child; returns its wait status. */
int t_fork_run(void (*fn)(void *), void *arg);

/* The trap engine named @name as eternal_engine_name() spells it
 * (ETERNAL_ENGINE_AUTO for any other name). */
int t_engine(const char *name);

/* Fill @buf with a byte pattern derived from @seed; check it again. */
void t_pattern_fill(void *buf, size_t len, unsigned seed);
int t_pattern_check(const void *buf, size_t len, unsigned seed);

#endif
