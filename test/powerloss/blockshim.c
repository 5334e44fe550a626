/*
 * blockshim: a write-recording block device for power-loss tests, in the manner of
 * dm-log-writes (there is no device-mapper on the test machines), as a FUSE filesystem.
 *
 * It exposes one file, MOUNTPOINT/disk, backed by IMAGE. `mount -o loop MOUNTPOINT/disk DIR`
 * puts a filesystem on it. The file is opened with direct_io, so every write the loop driver
 * makes reaches this process (no FUSE page cache in between), and the loop driver turns each
 * REQ_PREFLUSH / REQ_OP_FLUSH (and a FUA write, which the block layer splits into a write and a
 * flush since loop has no FUA) into fsync(2) of the file, which arrives here as FUSE_FSYNC.
 *
 * Every write is applied to IMAGE and appended to LOG; every fsync appends a flush barrier:
 *   record = u8 type ('W' write, 'F' flush) | u8[3] zero | u32 length | u64 offset | length bytes
 * (little-endian; a flush has length 0 and offset 0). Records are appended before the request
 * is answered, by one thread (-s), so LOG is the order in which the device acknowledged them.
 *
 * Usage: blockshim IMAGE LOG MOUNTPOINT   (runs in the foreground; fusermount3 -u to stop)
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int image_fd = -1;
static int log_fd = -1;
static off_t image_size;

struct record {
  uint8_t type;
  uint8_t pad[3];
  uint32_t length;
  uint64_t offset;
};

/* Appends one record; a short write of the log is fatal (the log would lie). */
static int append(char type, const char *buf, size_t len, off_t off) {
  struct record r = {.type = (uint8_t)type, .length = (uint32_t)len, .offset = (uint64_t)off};
  struct iovec iov[2] = {{&r, sizeof r}, {(void *)buf, len}};
  ssize_t want = (ssize_t)(sizeof r + len);
  ssize_t n = writev(log_fd, iov, len ? 2 : 1);
  if (n != want) {
    perror("blockshim: log write");
    abort();
  }
  return 0;
}

static int shim_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  (void)fi;
  memset(st, 0, sizeof *st);
  if (strcmp(path, "/") == 0) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else if (strcmp(path, "/disk") == 0) {
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_size = image_size;
  } else {
    return -ENOENT;
  }
  return 0;
}

static int shim_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
  (void)off, (void)fi, (void)flags;
  if (strcmp(path, "/") != 0) return -ENOENT;
  fill(buf, ".", NULL, 0, 0);
  fill(buf, "..", NULL, 0, 0);
  fill(buf, "disk", NULL, 0, 0);
  return 0;
}

static int shim_open(const char *path, struct fuse_file_info *fi) {
  if (strcmp(path, "/disk") != 0) return -ENOENT;
  fi->direct_io = 1; /* no page cache in the FUSE layer: each loop write is a FUSE_WRITE */
  fi->keep_cache = 0;
  return 0;
}

static int shim_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path, (void)fi;
  if (off >= image_size) return 0;
  if (off + (off_t)size > image_size) size = (size_t)(image_size - off);
  ssize_t n = pread(image_fd, buf, size, off);
  return n < 0 ? -errno : (int)n;
}

static int shim_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path, (void)fi;
  if (off >= image_size) return -ENOSPC;
  if (off + (off_t)size > image_size) size = (size_t)(image_size - off);
  ssize_t n = pwrite(image_fd, buf, size, off);
  if (n < 0) return -errno;
  append('W', buf, (size_t)n, off);
  return (int)n;
}

static int shim_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path, (void)datasync, (void)fi;
  append('F', NULL, 0, 0);
  return 0;
}

/* Discard (FALLOC_FL_PUNCH_HOLE) is refused: the loop device then advertises no discard, and
   ext4 mounted without -o discard sends none anyway. */
static int shim_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  (void)path, (void)mode, (void)off, (void)len, (void)fi;
  return -EOPNOTSUPP;
}

static int shim_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  (void)path, (void)fi;
  return size == image_size ? 0 : -EPERM;
}

static const struct fuse_operations ops = {
    .getattr = shim_getattr,
    .readdir = shim_readdir,
    .open = shim_open,
    .read = shim_read,
    .write = shim_write,
    .fsync = shim_fsync,
    .fallocate = shim_fallocate,
    .truncate = shim_truncate,
};

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: blockshim IMAGE LOG MOUNTPOINT\n");
    return 2;
  }
  image_fd = open(argv[1], O_RDWR);
  if (image_fd < 0) {
    perror(argv[1]);
    return 1;
  }
  image_size = lseek(image_fd, 0, SEEK_END);
  log_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  if (log_fd < 0) {
    perror(argv[2]);
    return 1;
  }
  /* -f foreground, -s one thread (the log order is the acknowledgement order), allow_other so
     the loop driver's kernel threads may use the file. */
  char *fargv[] = {argv[0], "-f", "-s", "-o", "allow_other,default_permissions,fsname=blockshim", argv[3], NULL};
  return fuse_main(6, fargv, &ops, NULL);
}
