/* fuzz_alloc.c - libFuzzer harness: random sequences of alloc, free, seal,
 * stats, block_find and set_tag, each answer checked against fuzz-model.h. */
#include "fuzz-model.h"

static size_t pick_size(struct fz_in *in)
{
	uint8_t s = (uint8_t)fz_take(in, 1);

	switch (s >> 6) {
	case 0:
		return (size_t)(s & 63) * 4 + 1 + (fz_take(in, 1) & 3);
	case 1:
		return 1 + fz_take(in, 2) % 16384;
	case 2:
		return 16385 + fz_take(in, 2) * 4;
	default:
		switch (s & 7) {
		case 0: return 0;
		case 1: return SIZE_MAX;
		case 2: return (1ul << 40) + 1;
		case 3: return 1ul << 40;
		case 4: return 16384;
		case 5: return 16385;
		default: return 1 + fz_take(in, 3) % (2u << 20);
		}
	}
}

static size_t pick_align(struct fz_in *in)
{
	uint8_t a = (uint8_t)fz_take(in, 1);
	unsigned k = a & 31;

	if (a < 128)
		return 0;
	if (k <= 20)
		return (size_t)1 << k;
	if (k == 21)
		return 3 << (a & 3);   /* not a power of two */
	if (k == 22)
		return (size_t)1 << 21; /* above ETERNAL_MAX_ALIGN */
	return 0;
}

static int pick_tier(struct fz_in *in)
{
	uint8_t t = (uint8_t)fz_take(in, 1);

	if (t == 0xff)
		return 2;
	if (t == 0xfe)
		return -1;
	return t & 1;
}

/* Any address: inside a live block, just past one, or anywhere in either
 * tier or the gaps around them. */
static uintptr_t pick_addr(const struct fz_model *m, struct fz_in *in)
{
	uint8_t k = (uint8_t)fz_take(in, 1);
	uint32_t off = (uint32_t)fz_take(in, 3);

	if (m->n && k < 160) {
		const struct fz_block *b = &m->b[fz_take(in, 2) % (unsigned)m->n];

		if (k < 120)
			return b->p + off % b->size;
		return k & 1 ? b->p + b->size : b->p - 1 - (off & 15);
	}
	if (k < 200)
		return m->lo[k & 1] + ((uintptr_t)off << 4) % (m->hi[k & 1] - m->lo[k & 1]);
	if (k < 220)
		return m->hi[0] + off % (m->lo[1] - m->hi[0] + 4096);
	return m->lo[0] - 1 - off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz_model m;
	struct fz_in in = { data, size };
	struct eternal_region_opts o = { .sz = sizeof(o) };
	uint8_t cfg = (uint8_t)fz_take(&in, 1);
	static const size_t steps[4] = { 64 << 10, 128 << 10, 2 << 20, 4096 };
	int ops = 0;

	o.name = "fuzz";
	o.sealed_reserve = (size_t)(2 + (cfg & 3) * 2) << 20;
	o.cow_reserve = (size_t)(2 + ((cfg >> 2) & 3) * 2) << 20;
	o.grow_step = steps[(cfg >> 4) & 3];
	o.flags = cfg & 0x40 ? ETERNAL_REGION_NOLOCK : 0;
	fz_model_open(&m, &o);

	while (in.n && ops++ < 2000) {
		uint8_t op = (uint8_t)fz_take(&in, 1);

		switch (op & 15) {
		case 0: case 1: case 2: case 3: case 4: case 5: {
			int tier = pick_tier(&in);
			size_t sz = pick_size(&in), al = pick_align(&in);

			if (m.n < FZ_MAX_LIVE)
				fz_alloc(&m, tier, sz, al, (uint8_t)fz_take(&in, 1));
			break;
		}
		case 6: case 7: case 8:
			if (m.n) {
				int i = (int)(fz_take(&in, 2) % (unsigned)m.n);
				int bogus = op & 0x80;

				fz_free(&m, i, bogus, bogus ? 1 + fz_take(&in, 2) % (m.b[i].size + 64) : 0);
			}
			break;
		case 9: case 10:
			fz_check_find(&m, pick_addr(&m, &in));
			break;
		case 11:
			fz_set_tag(&m, op & 0x80 ? pick_addr(&m, &in) : m.n ? m.b[fz_take(&in, 1) % (unsigned)m.n].p : 0,
				   (uint8_t)fz_take(&in, 1));
			break;
		case 12:
			fz_check_stats(&m);
			break;
		case 13:
			/* Seal rarely: most of the state space is warm-up. */
			if ((op >> 4) == 0xf)
				fz_seal(&m, ETERNAL_MODE_STRICT);
			else if ((op >> 4) == 0xe)
				fz_seal(&m, ETERNAL_MODE_OFF);
			else
				fz_check_all_contents(&m);
			break;
		case 14:
			/* Rewrite a block the caller may still write. */
			if (m.n) {
				struct fz_block *b = &m.b[fz_take(&in, 2) % (unsigned)m.n];

				if (b->tier == ETERNAL_TIER_COW || !m.sealed || m.sealed == ETERNAL_MODE_OFF + 1) {
					fz_check_contents(b);
					b->seed = (uint32_t)fz_take(&in, 4);
					fz_fill(b);
				}
			}
			break;
		case 15: {
			/* A burst of one size: fills spans, then frees every other. */
			int tier = op >> 7, n0 = m.n;
			size_t sz = 1 + fz_take(&in, 1) * 16;

			for (int k = 0; k < 24 && m.n < FZ_MAX_LIVE; k++)
				fz_alloc(&m, tier, sz, 0, (uint8_t)k);
			for (int k = m.n - 1; k >= n0; k -= 2)
				fz_free(&m, k, 0, 0);
			break;
		}
		}
	}
	fz_check_stats(&m);
	fz_model_close(&m);
	return 0;
}
