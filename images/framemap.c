/*
 * framemap: what each 2 MiB guest-physical frame holds, from /proc/kpageflags and
 * /proc/kpagecount. Built statically into the guest image (harness/artifacts/initramfs.py)
 * and run by the harness over SSH at each step boundary (harness/probes/guestmap.py).
 *
 * Each 4 KiB page is counted in exactly one class, in this order:
 *   nopage   no struct page (a hole, unplugged memory)             KPF_NOPAGE
 *   balloon  PageOffline: balloon pages (4 KiB, or every subpage of KPF_OFFLINE
 *            a 2 MiB balloon page), virtio-mem's fake-offline blocks
 *   thp      part of a transparent huge page                        KPF_THP
 *   free     in a free buddy block: KPF_BUDDY (6.1 sets it on every page of the
 *            block, so the sum is MemFree; newer kernels only on its head, the
 *            rest has no flag and no reference, so such pages right after a free
 *            page count as free too). Pages on the per-CPU free lists are "other".
 *   anon     anonymous 4 KiB pages (the workload after its THPs were split)
 *   other    everything else: kernel, page tables, slab, page cache, reserved
 *
 * Output: one line per run of frames with equal counts, so a mostly idle 16 GiB guest
 * prints a few lines:
 *   F <first frame> <frames> <nopage> <balloon> <thp> <free> <anon> <other>
 * then "END <frames read>". A frame is PFN >> 9. Root only (kpageflags).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FRAME_PAGES 512
#define CHUNK_FRAMES 64
#define CHUNK_PAGES (FRAME_PAGES * CHUNK_FRAMES)

#define KPF_BUDDY 10
#define KPF_ANON 12
#define KPF_NOPAGE 20
#define KPF_THP 22
#define KPF_OFFLINE 23
#define KPF_ZERO_PAGE 24

enum { C_NOPAGE, C_BALLOON, C_THP, C_FREE, C_ANON, C_OTHER, NCLASS };

/* A page with none of these bits (the kernel-internal bits from 32 up include
 * KPF_RESERVED) and no reference, right after a free page, is the tail of a free block.
 * Not on its own: the tails of a non-compound high-order allocation look the same
 * (about 65 MB of a 1 GiB 6.1 guest), but they follow a referenced head. */
#define STABLE_MASK 0xffffffffULL

static uint64_t flags[CHUNK_PAGES], counts[CHUNK_PAGES];

static ssize_t read_at(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);

		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += n;
	}
	return done;
}

static int classify(uint64_t f, uint64_t count, int after_free)
{
	if (f & (1ULL << KPF_NOPAGE))
		return C_NOPAGE;
	if (f & (1ULL << KPF_OFFLINE))
		return C_BALLOON;
	if ((f & (1ULL << KPF_THP)) && !(f & (1ULL << KPF_ZERO_PAGE)))
		return C_THP;
	if ((f & (1ULL << KPF_BUDDY)) || (after_free && (f & STABLE_MASK) == 0 && count == 0))
		return C_FREE;
	if (f & (1ULL << KPF_ANON))
		return C_ANON;
	return C_OTHER;
}

static void print_run(uint64_t first, uint64_t n, const unsigned *c)
{
	printf("F %llu %llu %u %u %u %u %u %u\n", (unsigned long long)first, (unsigned long long)n,
	       c[C_NOPAGE], c[C_BALLOON], c[C_THP], c[C_FREE], c[C_ANON], c[C_OTHER]);
}

int main(void)
{
	int ff = open("/proc/kpageflags", O_RDONLY);
	int fc = open("/proc/kpagecount", O_RDONLY);
	unsigned prev[NCLASS] = {0}, cur[NCLASS];
	uint64_t frame = 0, run_first = 0, run_len = 0;
	int last = C_OTHER;

	if (ff < 0 || fc < 0) {
		perror("framemap: /proc/kpageflags or /proc/kpagecount");
		return 1;
	}
	for (;;) {
		off_t off = (off_t)frame * FRAME_PAGES * 8;
		ssize_t nf = read_at(ff, flags, sizeof(flags), off);
		ssize_t nc = read_at(fc, counts, sizeof(counts), off);
		uint64_t frames, i, j;

		if (nf < 0 || nc < 0) {
			perror("framemap: read");
			return 1;
		}
		if (nc < nf)
			nf = nc;
		frames = (uint64_t)nf / 8 / FRAME_PAGES;  /* a partial last frame is left out */
		if (!frames)
			break;
		for (i = 0; i < frames; i++, frame++) {
			memset(cur, 0, sizeof(cur));
			for (j = 0; j < FRAME_PAGES; j++) {
				last = classify(flags[i * FRAME_PAGES + j], counts[i * FRAME_PAGES + j],
						last == C_FREE);
				cur[last]++;
			}
			if (run_len && !memcmp(cur, prev, sizeof(cur))) {
				run_len++;
				continue;
			}
			if (run_len)
				print_run(run_first, run_len, prev);
			memcpy(prev, cur, sizeof(cur));
			run_first = frame;
			run_len = 1;
		}
		if (frames < CHUNK_FRAMES)
			break;
	}
	if (run_len)
		print_run(run_first, run_len, prev);
	printf("END %llu\n", (unsigned long long)frame);
	return 0;
}
