/* A FUSE server that never answers a write: tests/fuse.rs gives a program a file
 * here as its stderr, to show that the library's lines cannot hold the program when
 * the server behind fd 2 hangs.
 *
 * Usage: hung_fuse MOUNTPOINT LOG ATTR_VALID
 *
 * Mounts itself on MOUNTPOINT with mount(2), speaking the raw /dev/fuse protocol
 * (<linux/fuse.h>, no libfuse), and serves one empty regular file, "file". It answers
 * only what opening a file, closing it and exiting need: INIT, LOOKUP, GETATTR, OPEN,
 * FLUSH and RELEASE; IOCTL with ENOTTY, what isatty(3) on a file must hear (Python
 * asks it of its stderr); and STATX and GETXATTR with ENOSYS, as a server that
 * predates the one and has no extended attributes, so that the kernel asks for
 * attributes with GETATTR and a write goes straight to WRITE (it checks
 * security.capability first). Every other request — WRITE, STATFS, SETATTR, POLL,
 * ... — is read and left pending for ever, as a server that hangs leaves it. Each request is
 * logged to LOG as one line "OPCODE PID" before any answer, so a request that never
 * gets one is in the log by the time its caller waits; the test reads which requests
 * a program caused from it.
 *
 * Attributes are valid for ATTR_VALID seconds: a long time keeps them cached, so that
 * only a request the program itself makes reaches the server; 0 expires them at once,
 * so that every stat(2) that may ask the server does ask it. Names stay valid for a
 * day either way. No FOPEN_DIRECT_IO and no writeback cache: a write goes through the
 * page cache and on to the server before write(2) returns, as on most FUSE file
 * systems (sshfs, s3fs), the case where a waiting write holds the program.
 *
 * Prints "mounted" on stdout once the mount exists; runs until the mount goes away
 * (read(2) fails with ENODEV) or it is killed. Closing /dev/fuse when it dies aborts
 * the connection, which fails every request still pending. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Newer than some <linux/fuse.h> (protocol 7.39, Linux 6.6). */
#ifndef FUSE_STATX
#define FUSE_STATX 52
#endif

#define FILE_NODE 2
#define DAY 86400

static int dev = -1;
static int log_fd = -1;
static uint64_t attr_valid;

/* Room for the largest request: a WRITE of max_write bytes and its headers, and at
 * least the FUSE_MIN_READ_BUFFER the kernel insists on. */
#define MAX_WRITE 4096
static _Alignas(uint64_t) char request[MAX_WRITE + 8192];

static void die(const char *what) {
    fprintf(stderr, "hung_fuse: %s: %s\n", what, strerror(errno));
    exit(1);
}

static const char *name_of(uint32_t opcode) {
    switch (opcode) {
    case FUSE_LOOKUP: return "LOOKUP";
    case FUSE_FORGET: return "FORGET";
    case FUSE_GETATTR: return "GETATTR";
    case FUSE_SETATTR: return "SETATTR";
    case FUSE_OPEN: return "OPEN";
    case FUSE_READ: return "READ";
    case FUSE_WRITE: return "WRITE";
    case FUSE_STATFS: return "STATFS";
    case FUSE_RELEASE: return "RELEASE";
    case FUSE_FSYNC: return "FSYNC";
    case FUSE_GETXATTR: return "GETXATTR";
    case FUSE_FLUSH: return "FLUSH";
    case FUSE_INIT: return "INIT";
    case FUSE_ACCESS: return "ACCESS";
    case FUSE_INTERRUPT: return "INTERRUPT";
    case FUSE_POLL: return "POLL";
    case FUSE_BATCH_FORGET: return "BATCH_FORGET";
    case FUSE_STATX: return "STATX";
    case FUSE_IOCTL: return "IOCTL";
    default: return NULL;
    }
}

/* One line per request, written whole with one write(2) so the test never reads
 * half a line. */
static void log_request(const struct fuse_in_header *in) {
    char line[64];
    const char *name = name_of(in->opcode);
    int len = name ? snprintf(line, sizeof line, "%s %u\n", name, in->pid)
                   : snprintf(line, sizeof line, "OPCODE_%u %u\n", in->opcode, in->pid);
    if (write(log_fd, line, len) != len)
        die("write log");
}

/* Answers request `in` with `error` (0 or a negative errno) and `size` bytes of `out`.
 * ENOENT means the request was interrupted meanwhile: nobody waits for the answer. */
static void reply(const struct fuse_in_header *in, int error, const void *out, size_t size) {
    struct fuse_out_header header = {
        .len = sizeof header + size,
        .error = error,
        .unique = in->unique,
    };
    struct iovec iov[2] = {
        {.iov_base = &header, .iov_len = sizeof header},
        {.iov_base = (void *)out, .iov_len = size},
    };
    if (writev(dev, iov, size ? 2 : 1) < 0 && errno != ENOENT)
        die("answer");
}

static void attributes(uint64_t node, struct fuse_attr *attr) {
    memset(attr, 0, sizeof *attr);
    attr->ino = node;
    attr->nlink = node == FILE_NODE ? 1 : 2;
    attr->mode = node == FILE_NODE ? S_IFREG | 0666 : S_IFDIR | 0755;
    attr->blksize = 4096;
}

static void answer(const struct fuse_in_header *in, const void *arg) {
    switch (in->opcode) {
    case FUSE_INIT: {
        const struct fuse_init_in *init = arg;
        struct fuse_init_out out = {
            .major = FUSE_KERNEL_VERSION,
            .minor = FUSE_KERNEL_MINOR_VERSION,
            .max_readahead = init->max_readahead,
            .max_write = MAX_WRITE,
        };
        reply(in, 0, &out, sizeof out);
        return;
    }
    case FUSE_LOOKUP: {
        if (in->nodeid != FUSE_ROOT_ID || strcmp(arg, "file") != 0) {
            reply(in, -ENOENT, NULL, 0);
            return;
        }
        struct fuse_entry_out out = {
            .nodeid = FILE_NODE,
            .generation = 1,
            .entry_valid = DAY,
            .attr_valid = attr_valid,
        };
        attributes(FILE_NODE, &out.attr);
        reply(in, 0, &out, sizeof out);
        return;
    }
    case FUSE_GETATTR: {
        struct fuse_attr_out out = {.attr_valid = attr_valid};
        attributes(in->nodeid, &out.attr);
        reply(in, 0, &out, sizeof out);
        return;
    }
    case FUSE_OPEN: {
        struct fuse_open_out out = {.fh = 1};
        reply(in, 0, &out, sizeof out);
        return;
    }
    case FUSE_IOCTL:
        reply(in, -ENOTTY, NULL, 0);
        return;
    case FUSE_STATX:
    case FUSE_GETXATTR:
        reply(in, -ENOSYS, NULL, 0);
        return;
    case FUSE_FLUSH:
    case FUSE_RELEASE:
        reply(in, 0, NULL, 0);
        return;
    default:
        /* Never answered: the caller waits until the connection is aborted. */
        return;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: hung_fuse MOUNTPOINT LOG ATTR_VALID\n");
        return 2;
    }
    attr_valid = strtoull(argv[3], NULL, 10);
    log_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
        die("open log");
    dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (dev < 0)
        die("open /dev/fuse");
    char options[128];
    snprintf(options, sizeof options, "fd=%d,rootmode=40000,user_id=%u,group_id=%u", dev,
             getuid(), getgid());
    if (mount("hung_fuse", argv[1], "fuse", MS_NOSUID | MS_NODEV, options) != 0)
        die("mount");
    printf("mounted\n");
    fflush(stdout);
    for (;;) {
        ssize_t n = read(dev, request, sizeof request);
        if (n < 0) {
            if (errno == ENOENT || errno == EINTR)
                continue; /* a request interrupted before it was read */
            if (errno == ENODEV)
                return 0; /* unmounted */
            die("read /dev/fuse");
        }
        if ((size_t)n < sizeof(struct fuse_in_header))
            continue;
        const struct fuse_in_header *in = (const void *)request;
        log_request(in);
        answer(in, request + sizeof *in);
    }
}
