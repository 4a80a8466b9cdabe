// SPDX-License-Identifier: GPL-2.0-only
/*
 * bh-step - run one step command of balloon-harness in a cgroup of its own and
 * record how every process it leaves behind ends.
 *
 *     bh-step CGROUP_DIR STATUS_FILE COMMAND
 *
 * Why a program and not a shell line: a tool that detaches itself (a plain
 * fork() whose parent exits, or a double-forking daemon) leaves processes
 * whose parent is gone. Their exit status would go to init and be lost; the
 * harness wants to say "killed by signal 9" when such a workload dies. So
 * bh-step makes itself a child subreaper (PR_SET_CHILD_SUBREAPER): every
 * orphan of the command is re-parented to it, and it reaps them all.
 *
 * What it does:
 *  - leaves the caller's session (setsid), ignores SIGHUP and SIGPIPE: the
 *    SSH channel that started it may close at any time;
 *  - creates CGROUP_DIR (it must not exist) and forks the command, which
 *    waits on a pipe until bh-step has moved it into the cgroup, then runs
 *    `/bin/sh -c COMMAND` with the stdio bh-step was given (the harness
 *    passes stdin /dev/null and a log file, never the SSH channel);
 *  - bh-step itself stays outside the cgroup (it is not part of the workload,
 *    and a cgroup with controllers enabled below it may hold no process);
 *  - appends one line per event to STATUS_FILE, each written with a single
 *    write() in O_APPEND mode so a reader never sees half a line:
 *        start PID          the command's process
 *        main PID exit N    the command ended (or: main PID signal N)
 *        orphan PID exit N  a process it left behind ended (or: signal N)
 *        done               no process of the command is left
 *        error MESSAGE      bh-step could not run the command
 *  - exits when every process is reaped (status 0), 125 on its own errors.
 *
 * Build: cc -static -O2 -Wall -Wextra -o bh-step images/bh-step.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#define EXIT_OWN_ERROR 125

static const char *status_path;

static void status_line(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n, fd;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	fd = open(status_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "bh-step: %s: %s\n", status_path, strerror(errno));
		return;
	}
	if (write(fd, buf, (size_t)n) != n)
		fprintf(stderr, "bh-step: writing %s: %s\n", status_path, strerror(errno));
	close(fd);
}

static void __attribute__((noreturn)) fail(const char *what, const char *arg)
{
	status_line("error %s %s: %s", what, arg, strerror(errno));
	fprintf(stderr, "bh-step: %s %s: %s\n", what, arg, strerror(errno));
	exit(EXIT_OWN_ERROR);
}

static void describe(int status, const char **how, int *value)
{
	if (WIFSIGNALED(status)) {
		*how = "signal";
		*value = WTERMSIG(status);
	} else {
		*how = "exit";
		*value = WEXITSTATUS(status);
	}
}

/* Move `pid` into the cgroup: one write of its number to cgroup.procs. */
static int enter_cgroup(const char *dir, pid_t pid)
{
	char path[4096], num[32];
	int fd, n, ok;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = snprintf(num, sizeof(num), "%d\n", (int)pid);
	ok = write(fd, num, (size_t)n) == n;
	if (close(fd) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	int go[2];
	pid_t main_pid, pid;
	int status, value;
	const char *how;
	char c;

	if (argc != 4) {
		fprintf(stderr, "usage: bh-step CGROUP_DIR STATUS_FILE COMMAND\n");
		return EXIT_OWN_ERROR;
	}
	status_path = argv[2];
	setsid();	/* fails harmlessly when already a group leader */
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
		fail("prctl", "PR_SET_CHILD_SUBREAPER");
	if (mkdir(argv[1], 0755) != 0)
		fail("mkdir", argv[1]);
	if (pipe2(go, O_CLOEXEC) != 0)
		fail("pipe", "");

	main_pid = fork();
	if (main_pid < 0)
		fail("fork", "");
	if (main_pid == 0) {
		close(go[1]);
		/* Wait until the parent has moved us into the cgroup (or gave up). */
		if (read(go[0], &c, 1) != 1)
			_exit(EXIT_OWN_ERROR);
		signal(SIGHUP, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", argv[3], (char *)NULL);
		fprintf(stderr, "bh-step: exec /bin/sh: %s\n", strerror(errno));
		_exit(127);
	}
	close(go[0]);
	if (enter_cgroup(argv[1], main_pid) != 0) {
		int saved = errno;

		kill(main_pid, SIGKILL);
		waitpid(main_pid, &status, 0);
		errno = saved;
		fail("cannot enter cgroup", argv[1]);
	}
	status_line("start %d", (int)main_pid);
	if (write(go[1], "g", 1) != 1)
		fail("pipe write", "");
	close(go[1]);

	for (;;) {
		pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;	/* ECHILD: nothing of the command is left */
		}
		describe(status, &how, &value);
		status_line("%s %d %s %d", pid == main_pid ? "main" : "orphan", (int)pid, how, value);
	}
	status_line("done");
	return 0;
}
