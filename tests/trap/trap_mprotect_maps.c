/* Description: the mprotect engine under vm.max_map_count: un-protecting
 * scattered pages splits the mapping until mprotect fails with ENOMEM; the
 * engine then gives the tier back (counted as dropped) instead of letting the
 * process die, and every write lands. */
#define _GNU_SOURCE
#include "trap-test.h"

#include <stdlib.h>

int main(void)
{
	eternal_region *r;
	char *base = NULL;
	void *p;
	long maxmap = 0;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");

	if (!f || fscanf(f, "%ld", &maxmap) != 1)
		maxmap = 65530;
	if (f)
		fclose(f);
	if (maxmap > 200000) {
		/* not a missing kernel feature, but the limit is out of reach */
		fprintf(stderr, "vm.max_map_count %ld: too large to reach here\n", maxmap);
		return T_PASS;
	}
	size_t pages = (size_t)maxmap + 4096; /* every other page written: maxmap/2 + 2048 splits */
	struct eternal_region_opts o = { .sz = sizeof(o), .sealed_reserve = (pages + 64) * 4096 };
	CHECK_RC(eternal_region_create(&o, &r), 0);
	for (size_t i = 0; i < pages; i++) {
		CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 4096, 4096, 1, &p), 0);
		if (!base)
			base = p;
	}
	struct eternal_trap_opts t = { .sz = sizeof(t), .engine = ETERNAL_ENGINE_MPROTECT, .ring_capacity = 65536 };
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_TRAP, &t), 0);
	for (size_t i = 0; i < pages; i += 2)
		base[i * 4096] = 1;
	for (size_t i = 0; i < pages; i += 2)
		CHECK(base[i * 4096] == 1);
	struct eternal_stats st = get_stats(r);
	fprintf(stderr, "%lu trapped before the tier was given back, %lu dropped\n",
		(unsigned long)st.trap_writes[0], (unsigned long)st.trap_dropped);
	CHECK(st.trap_writes[0] > 1000 && st.trap_writes[0] < pages / 2);
	CHECK(st.trap_dropped == 1); /* the ring has room: the one drop is the tier given back */
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
