/* fuzz_startmap.c - libFuzzer harness for the allocation-start map: builds a
 * layout of small and large blocks with odd alignments and frees, then resolves
 * every granule of both tiers (and the bytes around every block) against the model. */
#include "fuzz-model.h"

static int by_addr(const void *a, const void *b)
{
	const struct fz_block *x = a, *y = b;

	return x->p < y->p ? -1 : x->p > y->p;
}

/* One pass over [lo, hi) (offset @phase inside each granule), walking the
 * sorted live blocks alongside. */
static void sweep(struct fz_model *m, int tier, unsigned phase)
{
	static struct fz_block sorted[FZ_MAX_LIVE];
	struct eternal_stats st = { .sz = sizeof(st) };
	uintptr_t lo = m->lo[tier], hi;
	int n = 0, j = 0;

	FZ_RC(eternal_stats_get(m->r, &st), 0);
	/* Past the committed end the map must answer too, without touching memory. */
	hi = lo + st.tier[tier].committed + 65536;
	if (hi > m->hi[tier])
		hi = m->hi[tier];
	for (int i = 0; i < m->n; i++)
		if (m->b[i].tier == tier)
			sorted[n++] = m->b[i];
	qsort(sorted, (size_t)n, sizeof(sorted[0]), by_addr);
	/* At most ~1k probes per tier (a probe in a long free run walks the
	 * map backwards, so a full granule sweep is too slow to fuzz); the
	 * edges of every block are probed exactly below. */
	size_t stride = 16;

	while ((hi - lo) / stride > 1024)
		stride *= 2;
	for (int i = 0; i < n; i++) {
		const struct fz_block *b = &sorted[i];

		fz_check_find(m, b->p);
		fz_check_find(m, b->p - 1);
		fz_check_find(m, b->p + b->size - 1);
		fz_check_find(m, b->p + b->size);
		fz_check_find(m, b->p + (b->size / 2 & ~(size_t)15) + phase);
	}
	for (uintptr_t a = lo + phase + (stride > 16 ? (phase * 977) % stride & ~(uintptr_t)15 : 0); a < hi; a += stride) {
		struct eternal_block eb;
		int rc = eternal_block_find(m->r, (const void *)a, &eb);

		while (j < n && sorted[j].p + sorted[j].size <= a)
			j++;
		if (j < n && a >= sorted[j].p) {
			if (rc != 0 || (uintptr_t)eb.start != sorted[j].p || eb.size != sorted[j].size ||
			    eb.tag != sorted[j].tag) {
				fprintf(stderr, "tier %d: %#lx in live %#lx+%zu resolves rc=%d to %p+%zu\n", tier,
					(unsigned long)a, (unsigned long)sorted[j].p, sorted[j].size, rc,
					rc ? NULL : eb.start, rc ? 0 : eb.size);
				abort();
			}
		} else if (rc != -ENOENT) {
			fprintf(stderr, "tier %d: %#lx outside every live block resolves rc=%d to %p+%zu\n", tier,
				(unsigned long)a, rc, rc ? NULL : eb.start, rc ? 0 : eb.size);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz_model m;
	struct fz_in in = { data, size };
	struct eternal_region_opts o = { .sz = sizeof(o) };
	uint8_t cfg = (uint8_t)fz_take(&in, 1);
	int ops = 0;

	o.sealed_reserve = (size_t)(2 + (cfg & 1) * 2) << 20;
	o.cow_reserve = (size_t)(2 + ((cfg >> 1) & 1) * 2) << 20;
	o.grow_step = 64 << 10;
	fz_model_open(&m, &o);

	while (in.n && ops++ < 600) {
		uint8_t op = (uint8_t)fz_take(&in, 1);
		int tier = op >> 7;

		switch (op & 7) {
		case 0: case 1: case 2: {
			/* Large: any size past a few granules, alignment up to 1 MiB. */
			size_t sz = 1 + fz_take(&in, 2) * (op & 0x40 ? 16 : 1);
			uint8_t a = (uint8_t)fz_take(&in, 1);

			if (m.n < FZ_MAX_LIVE)
				fz_alloc(&m, tier, sz < 16 ? sz + 16384 : sz, a < 96 ? 0 : (size_t)1 << (4 + a % 17),
					 (uint8_t)fz_take(&in, 1));
			break;
		}
		case 3: {
			size_t sz = 1 + fz_take(&in, 2) % 16384;
			uint8_t a = (uint8_t)fz_take(&in, 1);

			if (m.n < FZ_MAX_LIVE)
				fz_alloc(&m, tier, sz, a < 128 ? 0 : (size_t)1 << (4 + a % 12), (uint8_t)a);
			break;
		}
		case 4: case 5:
			if (m.n)
				fz_free(&m, (int)(fz_take(&in, 2) % (unsigned)m.n), 0, 0);
			break;
		case 6: {
			/* Free the blocks next to one another so holes coalesce. */
			if (m.n) {
				uintptr_t p = m.b[fz_take(&in, 2) % (unsigned)m.n].p;

				for (int k = 0; k < 4 && m.n; k++) {
					int best = -1;

					for (int i = 0; i < m.n; i++)
						if (m.b[i].p >= p && (best < 0 || m.b[i].p < m.b[best].p))
							best = i;
					if (best < 0)
						break;
					p = m.b[best].p + m.b[best].size;
					fz_free(&m, best, 0, 0);
				}
			}
			break;
		}
		case 7:
			if (m.n) {
				const struct fz_block *b = &m.b[fz_take(&in, 2) % (unsigned)m.n];

				fz_check_find(&m, b->p + fz_take(&in, 3) % (b->size + 32));
				fz_check_find(&m, b->p - 1);
			}
			if (op == 0xff)
				fz_seal(&m, ETERNAL_MODE_STRICT);
			break;
		}
	}
	{
		unsigned phase = (unsigned)(cfg >> 4) & 15;

		sweep(&m, ETERNAL_TIER_SEALED, phase);
		sweep(&m, ETERNAL_TIER_COW, phase);
	}
	fz_check_stats(&m);
	fz_model_close(&m);
	return 0;
}
