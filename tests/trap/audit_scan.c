/* Description: audit mode reports exactly the pages written since they were
 * last protected, with the blocks on each; REPROTECT starts a new interval;
 * writes cost no trap (no events, no counts). */
#define _GNU_SOURCE
#include "trap-test.h"

static int has(const struct eternal_dirty_page *d, int n, const void *page)
{
	for (int i = 0; i < n; i++)
		if (d[i].addr == (uintptr_t)page)
			return 1;
	return 0;
}

int main(void)
{
	struct fixture f;
	struct eternal_dirty_page d[256];
	volatile int sink = 0;

	int p = eternal_audit_probe();
	if (p == 0)
		t_skip("UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN unavailable");
	CHECK(p == 1);
	fixture_init(&f);
	/* small blocks too: 64 x 48 bytes on one page */
	void *small[64];
	for (int i = 0; i < 64; i++)
		CHECK_RC(eternal_alloc(f.r, ETERNAL_TIER_SEALED, 48, 0, 3, &small[i]), 0);
	CHECK_RC(fixture_seal(&f, ETERNAL_MODE_AUDIT, ETERNAL_ENGINE_AUTO, 0, 0, NULL), 0);
	CHECK(get_stats(f.r).mode == ETERNAL_MODE_AUDIT);

	/* reads dirty nothing */
	for (int i = 0; i < NBLK; i++)
		sink += f.blk[i][100] + f.blk[i][5000];
	CHECK_RC(eternal_audit_scan(f.r, 0, d, 256), 0);

	f.blk[3][0] = 1;          /* page 0 of block 3 */
	f.blk[3][10] = 1;         /* same page */
	f.blk[9][4096 + 7] = 1;   /* page 1 of block 9 */
	f.blk[40][4095] = 1;      /* page 0 of block 40 */
	((char *)small[5])[0] = 1;
	int n = eternal_audit_scan(f.r, 0, d, 256);
	CHECK_RC(n, 4);
	CHECK(has(d, n, f.blk[3]) && has(d, n, f.blk[9] + 4096) && has(d, n, f.blk[40]));
	long pg = f.page;
	char *spage = (char *)((uintptr_t)small[5] & ~(uintptr_t)(pg - 1));
	CHECK(has(d, n, spage));
	for (int i = 0; i < n; i++) {
		CHECK(d[i].tier == ETERNAL_TIER_SEALED);
		if (d[i].addr == (uintptr_t)spage) {
			/* every small block starting on that page */
			uint32_t want = 0;
			for (int k = 0; k < 64; k++)
				want += ((uintptr_t)small[k] & ~(uintptr_t)(pg - 1)) == (uintptr_t)spage;
			CHECK(d[i].blocks >= want && d[i].blocks <= want + 1);
		} else {
			CHECK(d[i].blocks == 1);
		}
	}
	/* without REPROTECT the pages stay reported; count-only mode agrees */
	CHECK_RC(eternal_audit_scan(f.r, 0, NULL, 0), 4);
	/* cap limits the list */
	CHECK_RC(eternal_audit_scan(f.r, 0, d, 2), 2);
	/* REPROTECT: reported now, clean next time */
	CHECK_RC(eternal_audit_scan(f.r, ETERNAL_AUDIT_REPROTECT, d, 256), 4);
	CHECK_RC(eternal_audit_scan(f.r, 0, d, 256), 0);
	f.blk[9][4096 + 8] = 2;
	n = eternal_audit_scan(f.r, ETERNAL_AUDIT_REPROTECT, d, 256);
	CHECK_RC(n, 1);
	CHECK(d[0].addr == (uintptr_t)(f.blk[9] + 4096));
	CHECK(f.blk[9][4096 + 7] == 1 && f.blk[9][4096 + 8] == 2);
	/* no trap events in audit mode */
	struct eternal_trap_event ev;
	CHECK_RC(eternal_trap_read(f.r, &ev, 1), -ENOTSUP);
	CHECK(get_stats(f.r).trap_writes[0] == 0);
	return T_PASS;
}
