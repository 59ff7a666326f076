/* common.c - the helpers declared in common.h, linked into every C test. */
#define _GNU_SOURCE
#include "common.h"
#include "eternal.h"

#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void t_skip(const char *fmt, ...)
{
	const char *strict = getenv("ETERNAL_TEST_NO_SKIP");
	va_list ap;

	fputs(strict && *strict == '1' ? "FAIL (skip forbidden): " : "SKIP: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(strict && *strict == '1' ? T_FAIL : T_SKIP);
}

/* One reader for both selections: by path substring, or by address range. */
static long smaps_sum(pid_t pid, const char *name, unsigned long rlo, unsigned long rhi, const char *field)
{
	char path[64], line[512];
	size_t flen = strlen(field);
	long total = 0;
	int in = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		/* A VMA header line starts with "lo-hi perms". */
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ' ')) {
			in = name ? strstr(line, name) != NULL : lo >= rlo && hi <= rhi;
			continue;
		}
		if (in && !strncmp(line, field, flen) && line[flen] == ':')
			total += strtol(line + flen + 1, NULL, 10);
	}
	fclose(f);
	return total;
}

long t_smaps_kb(pid_t pid, const char *name, const char *field)
{
	return smaps_sum(pid, name, 0, 0, field);
}

long t_smaps_range_kb(pid_t pid, unsigned long lo, unsigned long hi, const char *field)
{
	return smaps_sum(pid, NULL, lo, hi, field);
}

int t_fork_run(void (*fn)(void *), void *arg)
{
	int status = -1;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	return status;
}

void t_pattern_fill(void *buf, size_t len, unsigned seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)((i * 2654435761u) ^ seed);
}

int t_pattern_check(const void *buf, size_t len, unsigned seed)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)((i * 2654435761u) ^ seed))
			return 0;
	return 1;
}

int t_engine(const char *name)
{
	for (int e = ETERNAL_ENGINE_PRECISE; e <= ETERNAL_ENGINE_MPROTECT; e++)
		if (!strcmp(name, eternal_engine_name((enum eternal_trap_engine)e)))
			return e;
	return ETERNAL_ENGINE_AUTO;
}
