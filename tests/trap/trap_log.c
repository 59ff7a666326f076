/* Description: the JSON-lines sink (argv[1] engine): one file per pid in the
 * log directory, one symbolized and described record per trapped write, on
 * disk before the process crashes; eternal-trap-log summarises them all. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static int describe(const struct eternal_trap_event *ev, char *buf, size_t len, void *arg)
{
	(void)arg;
	return snprintf(buf, len, "field_%lu", (unsigned long)(ev->block_offset % 4096));
}

static volatile uintptr_t bad_addr = 8;

static int count_lines(const char *path)
{
	char buf[65536];
	int fd = open(path, O_RDONLY), n = 0;
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	for (ssize_t i = 0; i < r; i++)
		n += buf[i] == '\n';
	return n;
}

static char *slurp(const char *path)
{
	static char buf[65536];
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[r > 0 ? r : 0] = 0;
	return buf;
}

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	struct fixture f;
	struct eternal_trap_event ev[8];
	char dir[] = "/tmp/eternal-log-XXXXXX", path[256], cmd[1024];

	need_engine(e);
	CHECK(mkdtemp(dir) != NULL);
	fixture_init(&f);
	struct eternal_trap_opts o = { .sz = sizeof(o), .engine = e, .log_dir = dir, .describe = describe };
	CHECK_RC(eternal_seal(f.r, ETERNAL_MODE_TRAP, &o), 0);
	writer(f.blk[1] + 16, 1);
	writer(f.blk[2] + 32, 1);
	writer(f.blk[3] + 48, 1);
	/* reading drains through the log first */
	CHECK_RC(eternal_trap_read(f.r, ev, 8), 3);
	snprintf(path, sizeof(path), "%s/%d.jsonl", dir, (int)getpid());
	CHECK_RC(count_lines(path), 3);
	char *txt = slurp(path);
	fprintf(stderr, "%s", txt);
	CHECK(strstr(txt, "\"writer\":\"writer") != NULL); /* writer+0x.. or a clone, writer.constprop.0+0x.. */
	CHECK(strstr(txt, "\"desc\":\"field_32\"") != NULL);
	char want[64];
	snprintf(want, sizeof(want), "\"block_start\":\"%p\"", (void *)f.blk[2]);
	CHECK(strstr(txt, want) != NULL);

	/* a child's records go to its own file and survive its crash */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		char cpath[256];
		snprintf(cpath, sizeof(cpath), "%s/%d.jsonl", dir, (int)getpid());
		writer(f.blk[4] + 8, 1);
		/* no eternal_trap_read, no close: the writer thread alone puts
		 * it on disk; then crash */
		for (int i = 0; i < 10000 && count_lines(cpath) < 1; i++)
			usleep(1000);
		abort();
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	snprintf(path, sizeof(path), "%s/%d.jsonl", dir, (int)pid);
	CHECK_RC(count_lines(path), 1);
	snprintf(want, sizeof(want), "\"pid\":%d,", (int)pid);
	CHECK(strstr(slurp(path), want) != NULL);

	/* a crash by a fault right after the trapped write: whatever the writer
	 * thread has not written yet is flushed by the dying handler */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		writer(f.blk[5] + 24, 1);
		*(volatile int *)bad_addr = 1; /* SIGSEGV, no waiting */
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	/* SIGABRT: a sanitizer's handler, which ours chains to, ends it so */
	CHECK(WIFSIGNALED(st) && (WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGABRT));
	snprintf(path, sizeof(path), "%s/%d.jsonl", dir, (int)pid);
	CHECK_RC(count_lines(path), 1);
	snprintf(want, sizeof(want), "\"block_start\":\"%p\"", (void *)f.blk[5]);
	CHECK(strstr(slurp(path), want) != NULL);

	/* the CLI reads the whole directory */
	const char *tool = getenv("TRAP_LOG_TOOL"), *py = getenv("PYTHON");
	if (!tool || !py) {
		fprintf(stderr, "TRAP_LOG_TOOL/PYTHON not set: run through meson test\n");
		return T_FAIL;
	}
	snprintf(cmd, sizeof(cmd), "%s %s --json %s", py, tool, dir);
	FILE *p = popen(cmd, "r");
	CHECK(p != NULL);
	char out[8192] = { 0 };
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	CHECK(pclose(p) == 0 && n > 0);
	fprintf(stderr, "%s\n", out);
	CHECK(strstr(out, "\"records\": 5") != NULL);
	CHECK(strstr(out, "\"processes\": 3") != NULL);
	/* the crash record has a symbol if the writer thread got to it first */
	CHECK(strstr(out, "\"writer (trap_log)\": 4") != NULL || strstr(out, "\"writer (trap_log)\": 5") != NULL);
	CHECK(strstr(out, "\"field_8\": 1") != NULL);
	CHECK(strstr(out, "\"11\": 1") != NULL); /* tag of block 1 */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return T_PASS;
}
