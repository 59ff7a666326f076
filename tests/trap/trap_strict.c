/* Description: strict mode: a write into the sealed tier kills the process
 * with the original SIGSEGV, after a diagnostic naming the block and offset
 * went to the log callback and a record to the log directory. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

static int logpipe = -1;
static void on_log(enum eternal_log_level lvl, const char *msg, void *arg)
{
	(void)arg;
	if (lvl == ETERNAL_LOG_ERROR && logpipe >= 0) {
		ssize_t w = write(logpipe, msg, strlen(msg));
		(void)w;
	}
}

static int describe(const struct eternal_trap_event *ev, char *buf, size_t len, void *arg)
{
	(void)arg;
	/* async-signal-safe: no stdio */
	const char s[] = "field=ob_refcnt";
	if (len < sizeof(s) || ev->block_offset != 8)
		return -ENOENT;
	memcpy(buf, s, sizeof(s));
	return (int)sizeof(s) - 1;
}

int main(void)
{
	struct fixture f;
	char dir[] = "/tmp/eternal-strict-XXXXXX";
	int p[2];

	CHECK(mkdtemp(dir) != NULL);
	CHECK(pipe(p) == 0);
	fixture_init(&f);
	/* no earlier handler (a sanitizer installs one): the default action is
	 * what the process must end with */
	signal(SIGSEGV, SIG_DFL);
	struct eternal_trap_opts o = { .sz = sizeof(o), .log_dir = dir, .describe = describe,
				       .flags = ETERNAL_TRAP_STRICT_DESCRIBE };
	CHECK_RC(eternal_seal(f.r, ETERNAL_MODE_STRICT, &o), 0);
	eternal_set_log(on_log, NULL);
	volatile int sink = f.blk[6][8]; /* reads are fine */
	(void)sink;
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		logpipe = p[1];
		writer(f.blk[6] + 8, 1);
		_exit(0); /* not reached */
	}
	close(p[1]);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
	char msg[1024] = { 0 }, want[64];
	ssize_t n = read(p[0], msg, sizeof(msg) - 1);
	CHECK(n > 0);
	fprintf(stderr, "diagnostic: %s\n", msg);
	snprintf(want, sizeof(want), "block %p + 8", (void *)f.blk[6]);
	CHECK(strstr(msg, want) != NULL);
	CHECK(strstr(msg, "field=ob_refcnt") != NULL);
	/* the record in <dir>/<child pid>.jsonl */
	char path[128], rec[4096] = { 0 };
	snprintf(path, sizeof(path), "%s/%d.jsonl", dir, (int)pid);
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	CHECK(read(fd, rec, sizeof(rec) - 1) > 0);
	close(fd);
	fprintf(stderr, "record: %s", rec);
	snprintf(want, sizeof(want), "\"block_start\":\"%p\"", (void *)f.blk[6]);
	CHECK(strstr(rec, want) != NULL);
	CHECK(strstr(rec, "\"block_offset\":8,") != NULL);
	CHECK(strstr(rec, "\"engine\":\"strict\"") != NULL);
	CHECK(strstr(rec, "\"desc\":\"field=ob_refcnt\"") != NULL);
	CHECK(strchr(rec, '\n') == rec + strlen(rec) - 1);
	/* the parent was not touched and still reads */
	CHECK(f.blk[6][8] == 6);
	unlink(path);
	rmdir(dir);
	return T_PASS;
}
