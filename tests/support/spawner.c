/*
 * Starts a program the two ways that share the parent's memory until exec:
 *   spawner vfork PROGRAM [ARGS...]        vfork(2) + execv(3)
 *   spawner posix_spawn PROGRAM [ARGS...]  posix_spawn(3)
 * and exits with the child's status.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    pid_t pid;
    int status;
    if (argc < 3)
        return 2;
    if (!strcmp(argv[1], "vfork")) {
        pid = vfork();
        if (pid == 0) {
            execv(argv[2], &argv[2]);
            _exit(127);
        }
    } else if (posix_spawn(&pid, argv[2], NULL, NULL, &argv[2], environ) != 0) {
        return 3;
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return 4;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 5;
}
