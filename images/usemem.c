// SPDX-License-Identifier: GPL-2.0-only
/*
 * usemem - allocate and dirty anonymous memory.
 *
 * A small, self-contained re-implementation of the subset of the
 * vm-scalability `usemem` tool that the "virtio_balloon:
 * VIRTIO_BALLOON_F_THP_ORDER" experiments use, e.g.
 *
 *     usemem --punch-holes -d -s -1 800m
 *
 * Build (static, no other files):
 *
 *     cc -static -O2 -Wall -Wextra -o usemem images/usemem.c
 *
 * Semantics (kept from vm-scalability unless noted):
 *  - SIZE is the size of the region of EACH task: `-n 4 100m` uses 400m.
 *  - Memory comes from mmap(MAP_PRIVATE|MAP_ANONYMOUS); no madvise() is
 *    issued unless --hugepage / --no-hugepage is given, so the THP mode of
 *    the kernel decides the page size.
 *  - Every word (unsigned long) of the region is written (step -j,
 *    default sizeof(long)), through a volatile pointer.
 *  - --punch-holes: after the write pass (and -Z read pass), the odd
 *    pages (1, 3, 5, ... in units of the base page size) are released with
 *    madvise(MADV_DONTNEED), leaving half of the pages resident.
 *    (vm-scalability releases the even pages; the amount is the same.)
 *    Like vm-scalability, --punch-holes forces mmap even with -a.
 *  - -R: pages are visited in a pseudo-random order (a permutation: every
 *    page is visited exactly once per pass and written word by word).
 *    vm-scalability instead draws random word indices with replacement,
 *    which is far slower and not guaranteed to write every word.
 *  - -d: the memory is fully in place (touched, holes punched) before the
 *    caller gets control back; see usage() for the protocol.
 *  - Throughput lines use the size of the region as the byte count:
 *      "<bytes> bytes / <usecs> usecs = <KB/s> KB/s"
 *      "read again <bytes> bytes / <usecs> usecs = <KB/s> KB/s"   (-Z)
 *    one per task, printed by the task itself when it is not detached.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#define EXIT_USAGE 2
#define MAX_TASKS 4096

static const char *ourname = "usemem";
static unsigned long pagesize = 4096;

static unsigned long long opt_bytes;	/* per task */
static unsigned long opt_step = sizeof(unsigned long);
static long opt_sleep;			/* seconds; < 0: forever */
static int opt_punch_holes;
static int opt_detach;
static int opt_nr_task = 1;
static int opt_random;
static int opt_malloc;
static int opt_read_again;
static int opt_hugepage;		/* 1: MADV_HUGEPAGE, -1: MADV_NOHUGEPAGE */
static int opt_quiet;
static const char *opt_pid_file;

/* Results of the read pass end up here so the loads cannot be elided. */
static volatile unsigned long sink;

struct ready_msg {
	int32_t pid;
	int32_t status;		/* 0: ready, otherwise errno-ish code */
};

static void usage(FILE *f)
{
	fprintf(f,
	"Usage: %s [options] SIZE[k|m|g|t]\n"
	"Allocate SIZE bytes of anonymous memory per task and write to all of it.\n"
	"SIZE is PER TASK (as in vm-scalability): -n 2 64m uses 128 MiB in total.\n"
	"Suffixes k/m/g/t (or K/M/G/T) are powers of 1024; no suffix = bytes.\n"
	"\n"
	"  -n, --nr-task N     run N processes, each with its own SIZE region\n"
	"                      (alias: --nproc)\n"
	"  -s, --sleep SEC     after touching, hold the memory SEC seconds, then\n"
	"                      exit; a negative SEC (-1) holds it until killed\n"
	"  -d, --detach        return once every task's memory is in place; the\n"
	"                      tasks keep holding it in their own session with\n"
	"                      stdio on /dev/null. Prints one line \"PID <pid>\"\n"
	"                      per task on stdout, exit status 0; non-zero if\n"
	"                      any task failed (the other tasks are then killed)\n"
	"  -p, --pid-file FILE also append the detached PIDs to FILE\n"
	"      --punch-holes   after touching, MADV_DONTNEED every other page\n"
	"                      (pages 1, 3, 5, ...), leaving half resident\n"
	"  -R, --random        touch the pages in random order\n"
	"  -a, --malloc        allocate with malloc() instead of mmap()\n"
	"                      (ignored with --punch-holes)\n"
	"  -Z, --read-again    read the memory again after the write pass\n"
	"  -j, --step SIZE     distance between two written words (default %zu)\n"
	"      --hugepage      madvise(MADV_HUGEPAGE) the region (default: none)\n"
	"      --no-hugepage   madvise(MADV_NOHUGEPAGE) the region\n"
	"  -q, --quiet         do not print \"punch holes done\"\n"
	"  -h, --help          show this message\n"
	"\n"
	"Without -d each task prints, after its write pass:\n"
	"  <bytes> bytes / <usecs> usecs = <KB/s> KB/s\n"
	"Exit status: 0 ok, 1 runtime failure, 2 usage error.\n",
	ourname, sizeof(unsigned long));
}

static void __attribute__((noreturn, format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", ourname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", ourname);
	exit(EXIT_USAGE);
}

/* Strict memparse(): digits, optional one-letter suffix, nothing else. */
static int parse_size(const char *s, unsigned long long *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	if (!s || !*s || *s == '-' || *s == '+' ||
	    *s == ' ' || *s == '\t')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 't': case 'T': shift = 40; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'k': case 'K': shift = 10; end++; break;
	case '\0': break;
	default: return -1;
	}
	if (*end != '\0')
		return -1;
	if (shift && v > (ULLONG_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

static int parse_long(const char *s, long *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static unsigned long long now_usecs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL +
		(unsigned long long)ts.tv_nsec / 1000ULL;
}

static void print_throughput(const char *intro, unsigned long long bytes,
			     unsigned long long usecs)
{
	char buf[256];
	int len;

	if (usecs == 0)
		usecs = 1;
	len = snprintf(buf, sizeof(buf), "%s%llu bytes / %llu usecs = %llu KB/s\n",
		       intro, bytes, usecs,
		       (unsigned long long)((double)bytes * 1e6 / 1024.0 / (double)usecs));
	fflush(stdout);
	/* One write() per line so that lines of several tasks do not mix. */
	if (len > 0 && write(STDOUT_FILENO, buf, (size_t)len) != len)
		fprintf(stderr, "%s: WARNING: statistics output may be incomplete\n",
			ourname);
}

/* ---- page order --------------------------------------------------------- */

/*
 * Pseudo-random permutation of [0, n) without extra memory: a full-period
 * LCG modulo a power of two m >= n (a = 1 mod 4, c odd), its output XORed
 * with a mask < m (still a bijection on [0, m)), values >= n skipped.
 */
struct page_order {
	unsigned long n, m, a, c, mask, x, left;
	int random;
	unsigned long next_seq;
};

static unsigned long long rng_state;

static unsigned long long rng_next(void)
{
	/* splitmix64 */
	unsigned long long z = (rng_state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void order_init(struct page_order *o, unsigned long n, int random)
{
	memset(o, 0, sizeof(*o));
	o->n = n;
	o->random = random;
	if (!random)
		return;
	o->m = 4;
	while (o->m < n)
		o->m <<= 1;
	o->a = ((unsigned long)rng_next() & ~3UL) | 1UL;	/* = 1 mod 4 */
	o->c = (unsigned long)rng_next() | 1UL;
	o->mask = (unsigned long)rng_next() & (o->m - 1);
	o->x = (unsigned long)rng_next() & (o->m - 1);
	o->left = o->m;
}

/* Returns 0 and the next page index in *idx, or -1 when done. */
static int order_next(struct page_order *o, unsigned long *idx)
{
	if (!o->random) {
		if (o->next_seq >= o->n)
			return -1;
		*idx = o->next_seq++;
		return 0;
	}
	while (o->left) {
		unsigned long v;

		o->x = (o->a * o->x + o->c) & (o->m - 1);
		o->left--;
		v = o->x ^ o->mask;
		if (v < o->n) {
			*idx = v;
			return 0;
		}
	}
	return -1;
}

/* ---- memory passes ------------------------------------------------------ */

/*
 * Visit the region page by page (in sequential or random page order); in
 * each page access the words whose offset is a multiple of opt_step.
 */
static unsigned long access_pass(unsigned long *p, unsigned long long bytes,
				 int write, unsigned long pattern)
{
	volatile unsigned long *vp = p;
	unsigned long words = (unsigned long)(bytes / sizeof(unsigned long));
	unsigned long per_page = pagesize / sizeof(unsigned long);
	unsigned long step = opt_step / sizeof(unsigned long);
	unsigned long npages = (words + per_page - 1) / per_page;
	unsigned long sum = 0;
	struct page_order o;
	unsigned long pg;

	order_init(&o, npages, opt_random);
	while (order_next(&o, &pg) == 0) {
		unsigned long first = pg * per_page;
		unsigned long last = first + per_page;
		unsigned long i;

		if (last > words)
			last = words;
		/* first multiple of step that is >= first */
		i = (first + step - 1) / step * step;
		for (; i < last; i += step) {
			if (write)
				vp[i] = (i ^ pattern) | 1UL;
			else
				sum += vp[i];
		}
	}
	return sum;
}

static void punch_holes(char *addr, unsigned long long len)
{
	unsigned long long off;

	for (off = pagesize; off + pagesize <= len; off += 2 * pagesize) {
		if (madvise(addr + off, pagesize, MADV_DONTNEED) != 0) {
			fprintf(stderr, "%s: madvise(MADV_DONTNEED) failed: %s\n",
				ourname, strerror(errno));
			exit(1);
		}
	}
}

/*
 * Allocate and touch one task's region. Returns 0 on success; on failure
 * prints a message and returns 1.
 */
static int do_task_memory(int report)
{
	unsigned long long bytes = opt_bytes;
	/* whole words, so that a size like 5 still gets its page touched */
	unsigned long long alloc = (bytes + sizeof(unsigned long) - 1) &
		~(unsigned long long)(sizeof(unsigned long) - 1);
	unsigned long long t0, t1;
	unsigned long pattern;
	void *p = NULL;

	if (bytes == 0)
		return 0;	/* like vm-scalability: pure fork/sleep run */

	if (bytes > SIZE_MAX - pagesize) {
		fprintf(stderr, "%s: size too large\n", ourname);
		return 1;
	}
	pattern = (unsigned long)rng_next();

	t0 = now_usecs();
	if (opt_malloc) {
		p = malloc((size_t)alloc);
		if (!p) {
			fprintf(stderr, "%s: malloc(%llu) failed: %s\n",
				ourname, alloc, strerror(errno));
			return 1;
		}
	} else {
		p = mmap(NULL, (size_t)alloc, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			fprintf(stderr, "%s: mmap(%llu) failed: %s\n",
				ourname, alloc, strerror(errno));
			return 1;
		}
		if (opt_hugepage &&
		    madvise(p, (size_t)alloc, opt_hugepage > 0 ?
			    MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
			fprintf(stderr, "%s: madvise(%s) failed: %s\n", ourname,
				opt_hugepage > 0 ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE",
				strerror(errno));
			return 1;
		}
	}

	access_pass(p, alloc, 1, pattern);
	t1 = now_usecs();
	if (report)
		print_throughput("", bytes, t1 - t0);

	if (opt_read_again) {
		t0 = now_usecs();
		sink += access_pass(p, alloc, 0, pattern);
		t1 = now_usecs();
		if (report)
			print_throughput("read again ", bytes, t1 - t0);
	}

	if (opt_punch_holes) {
		punch_holes(p, bytes);
		if (report && !opt_quiet) {
			printf("punch holes done\n");
			fflush(stdout);
		}
	}
	/* The region is intentionally never freed: exit() releases it. */
	return 0;
}

static void hold(void)
{
	struct timespec ts;

	if (opt_sleep < 0) {
		for (;;)
			pause();
	}
	ts.tv_sec = opt_sleep;
	ts.tv_nsec = 0;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void seed_rng(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	rng_state = ((unsigned long long)ts.tv_sec << 32) ^
		(unsigned long long)ts.tv_nsec ^
		((unsigned long long)getpid() << 16);
	rng_next();
}

/* ---- foreground mode ---------------------------------------------------- */

/* A foreground task: dies with its parent (killing usemem kills all tasks). */
static void __attribute__((noreturn)) foreground_child(int parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != (pid_t)parent)
		_exit(1);
	seed_rng();
	if (do_task_memory(1))
		_exit(1);
	hold();
	_exit(0);
}

/*
 * Fork opt_nr_task children, each running child(arg), which never returns.
 * Returns how many started; a fork failure is reported and sets *failed.
 */
static int fork_tasks(pid_t *pids, void (*child)(int), int arg, int *failed)
{
	int i;

	fflush(stdout);
	fflush(stderr);
	for (i = 0; i < opt_nr_task; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			fprintf(stderr, "%s: fork failed: %s\n", ourname, strerror(errno));
			*failed = 1;
			break;
		}
		if (pid == 0)
			child(arg);
		pids[i] = pid;
	}
	return i;
}

static int run_foreground(void)
{
	pid_t pids[MAX_TASKS];
	int i, started = 0, failed = 0;

	if (opt_nr_task == 1) {
		seed_rng();
		if (do_task_memory(1))
			return 1;
		hold();
		return 0;
	}

	started = fork_tasks(pids, foreground_child, (int)getpid(), &failed);

	for (i = 0; i < started; i++) {
		int status;

		while (waitpid(pids[i], &status, 0) < 0) {
			if (errno != EINTR) {
				perror("waitpid");
				return 1;
			}
		}
		if (WIFSIGNALED(status)) {
			fprintf(stderr, "%s: task %d killed by signal %d\n",
				ourname, (int)pids[i], WTERMSIG(status));
			failed = 1;
		} else if (WEXITSTATUS(status) != 0) {
			failed = 1;
		}
	}
	return failed ? 1 : 0;
}

/* ---- detached mode ------------------------------------------------------ */

static void redirect_stdio_to_devnull(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* Close every descriptor above stderr except `keep`. */
static void close_other_fds(int keep)
{
	long max, fd;

#ifdef SYS_close_range
	if ((keep <= 3 || syscall(SYS_close_range, 3U, (unsigned)keep - 1U, 0U) == 0) &&
	    syscall(SYS_close_range, keep < 3 ? 3U : (unsigned)keep + 1U, ~0U, 0U) == 0)
		return;
#endif
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (fd = 3; fd < max; fd++)
		if (fd != keep)
			close((int)fd);
}

static void __attribute__((noreturn)) detached_child(int wfd)
{
	struct ready_msg msg;

	setsid();	/* leave the caller's session and controlling tty */
	signal(SIGHUP, SIG_IGN);
	seed_rng();

	msg.pid = (int32_t)getpid();
	msg.status = do_task_memory(0) ? 1 : 0;
	/* Errors (if any) were printed on the caller's stderr above. */
	if (msg.status == 0) {
		/*
		 * Let the caller (e.g. a dropbear session) finish without us:
		 * keep no descriptor of it open, neither stdio nor anything
		 * inherited. Done before reporting, so that the caller's
		 * descriptors are released by the time it returns.
		 */
		redirect_stdio_to_devnull();
		close_other_fds(wfd);
		/* Do not pin the caller's cwd; failure is harmless. */
		if (chdir("/") != 0)
			errno = 0;
	}
	if (write(wfd, &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		_exit(1);
	if (msg.status)
		_exit(1);
	close(wfd);	/* the caller waits for this EOF */
	hold();
	_exit(0);
}

static int run_detached(void)
{
	pid_t pids[MAX_TASKS];
	int ready[MAX_TASKS];
	int fds[2];
	int i, started = 0, nready = 0, failed = 0, eof = 0;

	if (pipe(fds) != 0) {
		fprintf(stderr, "%s: pipe failed: %s\n", ourname, strerror(errno));
		return 1;
	}
	/* The children inherit the read end too; detached_child() closes it with
	 * every other inherited descriptor. Only write ends decide the EOF below. */
	started = fork_tasks(pids, detached_child, fds[1], &failed);
	memset(ready, 0, sizeof(ready));
	close(fds[1]);

	/* Wait for every task's report (or EOF if all remaining ones died). */
	while (nready < started) {
		struct ready_msg msg;
		ssize_t n = read(fds[0], &msg, sizeof(msg));

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(msg)) {
			/* every task left has closed the pipe: it died */
			eof = 1;
			break;
		}
		for (i = 0; i < started; i++) {
			if (pids[i] == (pid_t)msg.pid && !ready[i]) {
				if (msg.status == 0) {
					ready[i] = 1;
					nready++;
				} else {
					ready[i] = -1;
					failed = 1;
				}
				break;
			}
		}
		if (failed)
			break;
	}
	/*
	 * All tasks reported ready: wait until each has also closed its end
	 * of the pipe, so that none holds anything of ours when we return.
	 */
	while (!failed && !eof) {
		char c;
		ssize_t n = read(fds[0], &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	close(fds[0]);

	if (nready != started)
		failed = 1;

	if (failed) {
		for (i = 0; i < started; i++) {
			int status;

			if (ready[i] == 1 || (ready[i] == 0 && !eof)) {
				/*
				 * Do not leave half of a failed run behind:
				 * stop the tasks that are ready or still busy.
				 */
				kill(pids[i], SIGKILL);
				waitpid(pids[i], &status, 0);
				continue;
			}
			if (waitpid(pids[i], &status, 0) != pids[i] || ready[i] != 0)
				continue;	/* ready[i] == -1 printed its error */
			if (WIFSIGNALED(status))
				fprintf(stderr, "%s: task %d killed by signal %d before "
					"its memory was in place\n", ourname,
					(int)pids[i], WTERMSIG(status));
			else
				fprintf(stderr, "%s: task %d exited (status %d) before "
					"its memory was in place\n", ourname,
					(int)pids[i], WEXITSTATUS(status));
		}
		fprintf(stderr, "%s: detached run failed\n", ourname);
		return 1;
	}

	if (opt_pid_file) {
		FILE *f = fopen(opt_pid_file, "a");

		if (!f) {
			fprintf(stderr, "%s: %s: %s\n", ourname, opt_pid_file,
				strerror(errno));
		} else {
			for (i = 0; i < started; i++)
				fprintf(f, "%d\n", (int)pids[i]);
			fclose(f);
		}
	}
	for (i = 0; i < started; i++)
		printf("PID %d\n", (int)pids[i]);
	fflush(stdout);
	return 0;
}

/* ---- main --------------------------------------------------------------- */

enum {
	OPT_PUNCH_HOLES = 256,
	OPT_HUGEPAGE,
	OPT_NO_HUGEPAGE,
};

static const struct option long_opts[] = {
	{ "nr-task",	 required_argument, NULL, 'n' },
	{ "nproc",	 required_argument, NULL, 'n' },
	{ "sleep",	 required_argument, NULL, 's' },
	{ "detach",	 no_argument,       NULL, 'd' },
	{ "pid-file",	 required_argument, NULL, 'p' },
	{ "random",	 no_argument,       NULL, 'R' },
	{ "malloc",	 no_argument,       NULL, 'a' },
	{ "read-again",	 no_argument,       NULL, 'Z' },
	{ "step",	 required_argument, NULL, 'j' },
	{ "quiet",	 no_argument,       NULL, 'q' },
	{ "help",	 no_argument,       NULL, 'h' },
	{ "punch-holes", no_argument,       NULL, OPT_PUNCH_HOLES },
	{ "hugepage",	 no_argument,       NULL, OPT_HUGEPAGE },
	{ "no-hugepage", no_argument,       NULL, OPT_NO_HUGEPAGE },
	{ NULL,		 0,                 NULL, 0 }
};

int main(int argc, char *argv[])
{
	unsigned long long v;
	long l;
	int c;

	if (argc > 0 && argv[0] && *argv[0])
		ourname = argv[0];
	{
		long ps = sysconf(_SC_PAGESIZE);

		if (ps > 0)
			pagesize = (unsigned long)ps;
	}

	while ((c = getopt_long(argc, argv, "n:s:dp:RaZj:qh", long_opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_long(optarg, &l) || l < 1 || l > MAX_TASKS)
				usage_error("invalid number of tasks '%s' (1..%d)",
					    optarg, MAX_TASKS);
			opt_nr_task = (int)l;
			break;
		case 's':
			if (parse_long(optarg, &l))
				usage_error("invalid sleep time '%s'", optarg);
			opt_sleep = l < 0 ? -1 : l;
			break;
		case 'd':
			opt_detach = 1;
			break;
		case 'p':
			opt_pid_file = optarg;
			break;
		case 'R':
			opt_random = 1;
			break;
		case 'a':
			opt_malloc = 1;
			break;
		case 'Z':
			opt_read_again = 1;
			break;
		case 'j':
			if (parse_size(optarg, &v) || v == 0 || v > (1ULL << 40))
				usage_error("invalid step '%s'", optarg);
			v = (v + sizeof(unsigned long) - 1) /
				sizeof(unsigned long) * sizeof(unsigned long);
			opt_step = (unsigned long)v;
			break;
		case 'q':
			opt_quiet = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_PUNCH_HOLES:
			opt_punch_holes = 1;
			break;
		case OPT_HUGEPAGE:
			opt_hugepage = 1;
			break;
		case OPT_NO_HUGEPAGE:
			opt_hugepage = -1;
			break;
		default:
			/* getopt_long already printed what was wrong */
			fprintf(stderr, "Try '%s --help' for more information.\n",
				ourname);
			return EXIT_USAGE;
		}
	}

	if (optind >= argc)
		usage_error("missing SIZE");
	if (optind != argc - 1)
		usage_error("unexpected argument '%s'", argv[optind + 1]);
	if (parse_size(argv[optind], &opt_bytes))
		usage_error("invalid size '%s' (expected a number with an "
			    "optional k/m/g/t suffix)", argv[optind]);

	if (opt_punch_holes && opt_malloc) {
		fprintf(stderr, "%s: --malloc ignored with --punch-holes\n", ourname);
		opt_malloc = 0;
	}
	if (opt_malloc && opt_hugepage)
		fprintf(stderr, "%s: --hugepage/--no-hugepage ignored with --malloc\n",
			ourname);

	if (opt_detach)
		return run_detached();
	return run_foreground();
}
