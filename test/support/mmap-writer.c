/*
 * mmap-writer: a process that writes files only through shared maps (as SQLite does its -shm
 * wal-index, or LMDB its data file), for the migration tests. A write through such a map
 * leaves the file's ctime as it was, which is what the filesystem pre-copy must not miss.
 *
 * usage: mmap-writer STOP VERDICT FILE:BYTES...
 * Maps each FILE (created or resized to BYTES) shared and writable. Step i (1, 2, ...) fills
 * page i mod (pages of the file) of every file with the eight-byte number i. While the file
 * STOP exists it writes nothing; the first time it sees STOP it checks every page of every
 * file against the steps it counted in memory and writes "OK <steps>" or the first
 * "BAD <file> page <p>: <found> want <want>" to VERDICT (through a temporary name). It
 * resumes once STOP is gone.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MAX_FILES 8

static const char *names[MAX_FILES];
static uint64_t *maps[MAX_FILES];
static size_t pages[MAX_FILES];

static void check(int files, uint64_t steps, const char *verdict) {
  char tmp[4096], line[1024] = "";
  snprintf(tmp, sizeof tmp, "%s.tmp", verdict);
  for (int f = 0; f < files && line[0] == '\0'; f++) {
    for (size_t p = 0; p < pages[f] && line[0] == '\0'; p++) {
      uint64_t want = steps >= p ? steps - (steps - p) % pages[f] : 0;
      for (size_t w = 0; w < PAGE / 8; w++) {
        uint64_t found = maps[f][p * (PAGE / 8) + w];
        if (found != want) {
          snprintf(line, sizeof line, "BAD %s page %zu: %llu want %llu\n", names[f], p, (unsigned long long)found, (unsigned long long)want);
          break;
        }
      }
    }
  }
  if (line[0] == '\0') snprintf(line, sizeof line, "OK %llu\n", (unsigned long long)steps);
  FILE *out = fopen(tmp, "w");
  if (out == NULL || fputs(line, out) < 0 || fclose(out) != 0 || rename(tmp, verdict) != 0) perror(verdict);
}

int main(int argc, char **argv) {
  if (argc < 4 || argc - 3 > MAX_FILES) {
    fprintf(stderr, "usage: mmap-writer STOP VERDICT FILE:BYTES... (at most %d files)\n", MAX_FILES);
    return 2;
  }
  int files = argc - 3;
  for (int f = 0; f < files; f++) {
    char *spec = argv[3 + f], *colon = strrchr(spec, ':');
    size_t bytes = colon == NULL ? 0 : strtoull(colon + 1, NULL, 10);
    if (colon == NULL || bytes < PAGE || bytes % PAGE != 0) {
      fprintf(stderr, "mmap-writer: %s: want FILE:BYTES, BYTES a multiple of %d\n", spec, PAGE);
      return 2;
    }
    *colon = '\0';
    names[f] = spec;
    pages[f] = bytes / PAGE;
    int fd = open(spec, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0) {
      perror(spec);
      return 1;
    }
    maps[f] = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (maps[f] == MAP_FAILED) {
      perror(spec);
      return 1;
    }
    close(fd);
  }
  uint64_t steps = 0;
  int checked = 0;
  struct timespec pause = {0, 200 * 1000};
  for (;;) {
    if (access(argv[1], F_OK) == 0) {
      if (!checked) check(files, steps, argv[2]);
      checked = 1;
      nanosleep(&pause, NULL);
      continue;
    }
    checked = 0;
    steps++;
    for (int f = 0; f < files; f++) {
      uint64_t *page = maps[f] + (steps % pages[f]) * (PAGE / 8);
      for (size_t w = 0; w < PAGE / 8; w++) page[w] = steps;
    }
    nanosleep(&pause, NULL);
  }
}
