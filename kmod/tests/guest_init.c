// SPDX-License-Identifier: GPL-2.0
/*
 * /init of the test guest built by run-in-qemu.sh.
 *
 * Mounts proc, sysfs, devtmpfs, debugfs and a tmpfs on /tmp, sets THP to
 * "always", then runs each line of /run.conf as a command (split at
 * spaces, no quoting), printing "PINFUZZ-GUEST: exit <status> <line>" after
 * each and "PINFUZZ-GUEST: done" at the end, and powers the machine off.
 * Built-in commands: "@timeout SECONDS" sets the timeout of the next
 * commands (default 1800 s; a command past it is killed with SIGKILL),
 * "@insmod PATH [PARAM...]" loads a module (finit_module), "@rmmod NAME"
 * unloads one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void put(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		printf("PINFUZZ-GUEST: cannot write %s: %s\n", path,
		       strerror(errno));
	if (fd >= 0)
		close(fd);
}

static int run(char *line, int timeout)
{
	char *argv[64];
	int argc = 0, st;
	time_t start;
	pid_t pid;

	for (char *tok = strtok(line, " \t"); tok && argc < 63;
	     tok = strtok(NULL, " \t"))
		argv[argc++] = tok;
	argv[argc] = NULL;
	if (!argc)
		return 0;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		setpgid(0, 0);
		execv(argv[0], argv);
		printf("PINFUZZ-GUEST: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	start = time(NULL);
	for (;;) {
		pid_t w = waitpid(-1, &st, WNOHANG);

		if (w == pid)
			break;
		if (w > 0)
			continue;	/* a reparented orphan */
		if (time(NULL) - start > timeout) {
			printf("PINFUZZ-GUEST: timeout after %d s, killing\n",
			       timeout);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
		}
		usleep(20000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int insmod(char *args)
{
	char *path = strtok(args, " \t");
	char *params = strtok(NULL, "");
	int fd, ret;

	fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0)
		return errno;
	ret = syscall(SYS_finit_module, fd, params ? params : "", 0);
	close(fd);
	return ret ? errno : 0;
}

int main(void)
{
	char line[1024], copy[1024];
	int timeout = 1800;
	FILE *conf;

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	mkdir("/tmp", 01777);
	mount("tmpfs", "/tmp", "tmpfs", 0, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	put("/sys/kernel/mm/transparent_hugepage/enabled", "always");

	conf = fopen("/run.conf", "r");
	while (conf && fgets(line, sizeof(line), conf)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		if (!strncmp(line, "@timeout ", 9)) {
			timeout = atoi(line + 9);
			continue;
		}
		strcpy(copy, line);
		if (!strncmp(line, "@insmod ", 8)) {
			printf("PINFUZZ-GUEST: exit %d %s\n", insmod(copy + 8),
			       line);
			continue;
		}
		if (!strncmp(line, "@rmmod ", 7)) {
			printf("PINFUZZ-GUEST: exit %d %s\n",
			       syscall(SYS_delete_module, copy + 7, O_NONBLOCK) ?
			       errno : 0, line);
			continue;
		}
		printf("PINFUZZ-GUEST: run %s\n", line);
		printf("PINFUZZ-GUEST: exit %d %s\n", run(copy, timeout), line);
	}
	printf("PINFUZZ-GUEST: done\n");
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
