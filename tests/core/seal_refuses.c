/* Description: a sealed tier cannot be changed by any other route: pwrite and
 * ftruncate on the memfd, a new writable shared mapping, mprotect back to
 * writable and a write through /proc/self/mem all fail. */
#define _GNU_SOURCE
#include "eternal.h"
#include "../common.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	eternal_region *r;
	char *p, buf[16] = "overwrite";
	int fd, memfd;
	void *m;

	CHECK_RC(eternal_region_create(NULL, &r), 0);
	CHECK_RC(eternal_alloc(r, ETERNAL_TIER_SEALED, 8192, 0, 0, (void **)&p), 0);
	memset(p, 'k', 8192);
	CHECK_RC(eternal_seal(r, ETERNAL_MODE_STRICT, NULL), 0);
	fd = eternal_tier_fd(r, ETERNAL_TIER_SEALED);
	CHECK(fd >= 0);

	CHECK(pwrite(fd, buf, sizeof(buf), 0) < 0 && errno == EPERM);
	CHECK(ftruncate(fd, 0) < 0 && errno == EPERM);
	CHECK(ftruncate(fd, 1 << 30) < 0 && errno == EPERM);
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m == MAP_FAILED && errno == EPERM);
	CHECK(mprotect((void *)((uintptr_t)p & ~4095ul), 4096, PROT_READ | PROT_WRITE) < 0 && errno == EACCES);
	/* The seals themselves are sealed. */
	CHECK(fcntl(fd, F_GET_SEALS) & F_SEAL_SEAL);

	memfd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	CHECK(memfd >= 0);
	CHECK(pwrite(memfd, buf, sizeof(buf), (off_t)(uintptr_t)p) < 0);
	close(memfd);

	for (int i = 0; i < 8192; i++)
		CHECK(p[i] == 'k');
	CHECK_RC(eternal_region_close(r), 0);
	return T_PASS;
}
