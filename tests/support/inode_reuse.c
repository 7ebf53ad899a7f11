/*
 * A daemon that deletes its log (its stderr), closes fd 2 and opens its data file,
 * which becomes fd 2 — and, on ext4, gets the deleted file's inode number at once.
 * It writes DATA1, creates a TCP socket (a debug line with KEEPALIVE_DEBUG=1), writes
 * DATA2. Usage: inode_reuse LOG DATA; prints "fd=2 reused=R" (R: same device and inode).
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct stat before, after;
    int fd;
    if (argc < 3 || fstat(2, &before))
        return 2;
    unlink(argv[1]);
    close(2);
    fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || fstat(fd, &after))
        return 3;
    printf("fd=%d reused=%d\n", fd,
           before.st_ino == after.st_ino && before.st_dev == after.st_dev);
    if (write(fd, "DATA1\n", 6) != 6)
        return 4;
    socket(AF_INET, SOCK_STREAM, 0);
    if (write(fd, "DATA2\n", 6) != 6)
        return 5;
    return 0;
}
