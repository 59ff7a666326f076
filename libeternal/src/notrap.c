/* notrap.c - what sealing needs from the trap engines when they are not
 * built in: strict and off work, trap and audit report -EOPNOTSUPP. */
#include "internal.h"

#include <errno.h>

int _eternal_trap_prepare(struct eternal_region *r, enum eternal_mode mode, const struct eternal_trap_opts *o)
{
	(void)r;
	(void)o;
	return mode == ETERNAL_MODE_TRAP || mode == ETERNAL_MODE_AUDIT ? -EOPNOTSUPP : 0;
}

int _eternal_trap_arm(struct eternal_region *r) { (void)r; return 0; }
void _eternal_trap_abort(struct eternal_region *r) { (void)r; }
void _eternal_trap_close(struct eternal_region *r) { (void)r; }
void _eternal_trap_stats(const struct eternal_region *r, struct eternal_stats *st) { (void)r; (void)st; }

int eternal_trap_probe(enum eternal_trap_engine engine) { (void)engine; return 0; }
int eternal_trap_read(eternal_region *r, struct eternal_trap_event *buf, size_t cap)
{ (void)r; (void)buf; (void)cap; return -EOPNOTSUPP; }
int eternal_symbolize(uint64_t pc, char *buf, size_t len) { (void)pc; (void)buf; (void)len; return -EOPNOTSUPP; }
int eternal_audit_scan(eternal_region *r, unsigned flags, struct eternal_dirty_page *out, size_t cap)
{ (void)r; (void)flags; (void)out; (void)cap; return -EOPNOTSUPP; }
