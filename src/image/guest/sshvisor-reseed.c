/*
 * Guest helper: credit fresh entropy from the host to the kernel and force
 * the CRNG to reseed. A VM cloned from a template snapshot starts with the
 * template's exact RNG state; writing to /dev/urandom alone mixes bytes in
 * but leaves the output stream unchanged until the next scheduled reseed.
 *
 * usage: sshvisor-reseed HEX   (at least 32 bytes of host randomness)
 */
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: sshvisor-reseed HEX\n");
    return 2;
  }
  size_t len = strlen(argv[1]) / 2;
  if (len < 32 || len > 512) {
    fprintf(stderr, "sshvisor-reseed: need 32 to 512 bytes of hex\n");
    return 2;
  }
  struct rand_pool_info *info = malloc(sizeof(*info) + len);
  if (!info) return 1;
  for (size_t i = 0; i < len; i++) {
    int hi = hexval(argv[1][2 * i]), lo = hexval(argv[1][2 * i + 1]);
    if (hi < 0 || lo < 0) {
      fprintf(stderr, "sshvisor-reseed: not hex\n");
      return 2;
    }
    ((unsigned char *)info->buf)[i] = (unsigned char)(hi << 4 | lo);
  }
  info->entropy_count = (int)(len * 8);
  info->buf_size = (int)len;
  int fd = open("/dev/urandom", O_WRONLY);
  if (fd < 0 || ioctl(fd, RNDADDENTROPY, info) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0) {
    perror("sshvisor-reseed");
    return 1;
  }
  close(fd);
  return 0;
}
