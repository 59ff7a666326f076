/* Description: a worker in trap mode is SIGKILLed while it writes its trap
 * log (JSON lines, one write(2) per record). 30 times, at random moments: the
 * records already in the file are intact - every newline-terminated line is
 * one whole JSON object (checked by python3's json when available), sequence
 * numbers are unique and rising, each names a page the worker wrote. Only the
 * record being written when the kill landed may be cut short (a write(2)
 * to a file is not atomic against SIGKILL once it spans two pages of the page
 * cache): it must be the last bytes of the file, counted and reported.
 * argv[1]: engine. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 8192
#define PAGE 4096
#define ROUNDS 30

/* The worker is forked from the sealed parent, as a prefork server's are:
 * its trap is re-armed and its log is <dir>/<its pid>.jsonl. */
static void worker(char *data, int ready)
{
	CHECK(write(ready, "r", 1) == 1);
	for (int i = 0; i < NPAGES; i++) {
		data[(size_t)i * PAGE + 8] = 1;
		if (i % 16 == 0)
			usleep(50);
	}
	pause(); /* until killed */
	_exit(T_FAIL);
}

static long torn;

/* Check one log file; returns the number of whole records. */
static long check_log(const char *path, uintptr_t lo, uintptr_t hi, const char *python)
{
	static char buf[1 << 23];
	long n = 0, last_seq = -1;
	size_t len;
	FILE *f = fopen(path, "re");
	char *line, *save = NULL;

	CHECK(f != NULL);
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = 0;
	if (len == 0)
		return 0;
	if (buf[len - 1] != '\n') {
		/* The record in flight at the kill: drop it, after checking
		 * it is one record's prefix. */
		char *last = strrchr(buf, '\n');

		last = last ? last + 1 : buf;
		CHECK(last[0] == '{' && !strchr(last, '\n'));
		fprintf(stderr, "%s: last record cut at %zu bytes (kill landed mid-write)\n", path, strlen(last));
		torn++;
		*last = 0;
		len = (size_t)(last - buf);
		if (!len)
			return 0;
	}
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *s = strstr(line, "\"seq\":"), *a = strstr(line, "\"address\":");
		long seq;
		unsigned long addr;

		if (line[0] != '{' || line[strlen(line) - 1] != '}' || !s || !a) {
			fprintf(stderr, "%s: malformed record: %.200s\n", path, line);
			exit(T_FAIL);
		}
		seq = strtol(s + 6, NULL, 10);
		a += strlen("\"address\":");
		while (*a == ' ' || *a == '"')
			a++;
		addr = strtoul(a, NULL, 0);
		CHECK(seq > last_seq);
		CHECK(addr >= lo && addr < hi);
		last_seq = seq;
		n++;
	}
	if (python) {
		char cmd[4096];

		snprintf(cmd, sizeof(cmd),
			 "%s -c 'import json,sys\nfor l in open(sys.argv[1]):\n if l.endswith(\"\\n\"): assert isinstance(json.loads(l), dict)' '%s'",
			 python, path);
		CHECK_RC(system(cmd), 0);
	}
	return n;
}

int main(int argc, char **argv)
{
	enum eternal_trap_engine engine = (enum eternal_trap_engine)t_engine(argc > 1 ? argv[1] : "auto");
	const char *python = getenv("PYTHON");
	char dir[] = "/tmp/eternal-tlog-kill-XXXXXX";
	long total = 0, empty = 0;
	int p = eternal_trap_probe(engine);

	if (p == 0)
		t_skip("engine %s unavailable on this kernel", argc > 1 ? argv[1] : "auto");
	CHECK(p == 1);
	if (!python && access("/usr/bin/python3", X_OK) == 0)
		python = "/usr/bin/python3";
	CHECK(mkdtemp(dir) != NULL);
	srand((unsigned)time(NULL));
	for (int round = 0; round < ROUNDS; round++) {
		struct eternal_region_opts o = { .sz = sizeof(o), .name = "tlogkill" };
		eternal_region *r;
		char *data, path[512], c;
		uintptr_t lo;
		int pp[2], status;
		pid_t pid;

		CHECK_RC(eternal_region_create(&o, &r), 0);
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, (size_t)NPAGES * PAGE, PAGE, 1, (void **)&data), 0);
		lo = (uintptr_t)data;
		{
			struct eternal_trap_opts to = { .sz = sizeof(to), .engine = engine, .ring_capacity = 1 << 14,
							.log_dir = dir };

			CHECK_RC(eternal_seal(r, ETERNAL_MODE_TRAP, &to), 0);
		}
		CHECK(pipe(pp) == 0);
		pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			close(pp[0]);
			worker(data, pp[1]);
		}
		close(pp[1]);
		CHECK(read(pp[0], &c, 1) == 1);
		close(pp[0]);
		usleep((useconds_t)(1000 + rand() % 60000));
		CHECK(kill(pid, SIGKILL) == 0);
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		snprintf(path, sizeof(path), "%s/%d.jsonl", dir, (int)pid);
		if (access(path, F_OK) == 0) {
			long n = check_log(path, lo, lo + (uintptr_t)NPAGES * PAGE, python);

			total += n;
			empty += n == 0;
			unlink(path);
		} else {
			empty++;
		}
		CHECK_RC(eternal_region_close(r), 0);
	}
	{
		char path[512];

		/* The parent sealed in trap mode too: its own (empty) log. */
		snprintf(path, sizeof(path), "%s/%d.jsonl", dir, (int)getpid());
		unlink(path);
	}
	CHECK(rmdir(dir) == 0);
	fprintf(stderr, "%d workers killed; %ld records read back intact; %ld logs empty or absent; "
		"%ld last records cut by the kill\n", ROUNDS, total, empty, torn);
	CHECK(total > 0); /* the kills did land while records were being written */
	return T_PASS;
}
