/* Description: writes from several threads are caught with each writer's tid
 * (argv[1] engine); two threads racing on one page log it once, and both
 * stores land. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <pthread.h>
#include <sys/syscall.h>

#define NT 4
static struct fixture f;
static pid_t tids[NT];
static pthread_barrier_t bar;

static void *run(void *arg)
{
	long i = (long)arg;
	tids[i] = (pid_t)syscall(SYS_gettid);
	pthread_barrier_wait(&bar);
	writer(f.blk[10 + i], (char)(100 + i)); /* own page */
	writer(f.blk[20] + 8 * i, (char)(50 + i)); /* one shared page */
	return NULL;
}

int main(int argc, char **argv)
{
	enum eternal_trap_engine e = engine_arg(argc, argv);
	struct eternal_trap_event ev[64];
	pthread_t th[NT];

	need_engine(e);
	fixture_init(&f);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_TRAP, e, engine_flags(argc, argv), 0, NULL), 0);
	for (int round = 0; round < 20; round++) {
		/* fresh pages each round: blocks 10..13 and 20 are rewritten, so
		 * only round 0 traps; later rounds check no re-trap and no hang */
		pthread_barrier_init(&bar, NULL, NT);
		for (long i = 0; i < NT; i++)
			CHECK(pthread_create(&th[i], NULL, run, (void *)i) == 0);
		for (int i = 0; i < NT; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&bar);
		int n = eternal_trap_read(f.r, ev, 64);
		if (round > 0) {
			CHECK_RC(n, 0);
			continue;
		}
		CHECK_RC(n, NT + 1);
		int own = 0, shared = 0;
		for (int k = 0; k < n; k++) {
			if (ev[k].block_start == (uintptr_t)f.blk[20]) {
				shared++;
				int ok = 0;
				for (int i = 0; i < NT; i++)
					ok |= ev[k].tid == tids[i] && ev[k].addr == (uintptr_t)(f.blk[20] + 8 * i);
				CHECK(ok);
				continue;
			}
			for (int i = 0; i < NT; i++)
				if (ev[k].block_start == (uintptr_t)f.blk[10 + i]) {
					CHECK(ev[k].tid == tids[i]);
					CHECK(pc_in_writer(ev[k].pc));
					own++;
				}
		}
		CHECK(own == NT && shared == 1);
	}
	for (int i = 0; i < NT; i++) {
		CHECK(f.blk[10 + i][0] == (char)(100 + i));
		CHECK(f.blk[20][8 * i] == (char)(50 + i));
	}
	CHECK(get_stats(f.r).trap_writes[0] == NT + 1);
	return T_PASS;
}
