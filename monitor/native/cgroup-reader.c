/*
 * Herd's native cgroup reader: what monitor/cgroup-fs.ts readCgroupUsage() reads for one
 * container (memory, CPU time, block I/O, processes, threads, network bytes), for every
 * container of a round in ONE call from JavaScript.
 *
 * Why it exists: at 1000 containers every 2 s the monitor makes ~3500 system calls a
 * second for these files. The kernel's share is the same from C or JavaScript; Node's
 * per-call overhead (argument checks, a context object, a string per read) doubled it
 * (bench:monitor prints both). The JavaScript reader stays as the fallback and as the
 * reference: monitor/cgroup-reader.test.ts checks both give the same values.
 *
 * Same rules as the JavaScript FileReader: cgroup files stay open and are re-read from
 * offset 0 (up to a budget of open files), a file that fails is closed and opened again
 * next time, and /proc/<pid>/net/dev is never kept open (it would keep the container's
 * network namespace, and its macvlan address, alive after the container is gone).
 *
 * API (N-API, ABI-stable across Node versions):
 *   track(memoryUsage, cpuUsage, ioServiced, procs, pidsCurrent, tasks, procRoot) -> slot
 *   untrack(slot)
 *   read(slots: Int32Array, count, cpuUsage: boolean, out: Float64Array)
 *     out[i*8 + k] for k = memory bytes, CPU ns, disk reads, disk writes, processes,
 *     threads, net in bytes, net out bytes; NaN where a value is not available.
 *   setMaxOpen(n), openFiles() -> n
 *   fileSizes(fds: Int32Array, count, out: Float64Array)
 *     out[i] = size of open file fds[i] (fstat), or -1; the log follower asks this of every
 *     container's json-file log each round and reads only those that grew.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { F_MEMORY, F_CPU, F_IO, F_PROCS, F_PIDS, F_TASKS, F_COUNT };
enum { V_MEMORY, V_CPU, V_READS, V_WRITES, V_PROCS, V_THREADS, V_NET_IN, V_NET_OUT, V_COUNT };

typedef struct {
  int used;
  char *path[F_COUNT];
  int fd[F_COUNT];
  char *proc_root;
} slot_t;

static slot_t *slots = NULL;
static int slot_cap = 0;
static int open_files = 0;
static int max_open = 1024;
static char *buf = NULL;
static size_t buf_cap = 0;

/* Reads a whole file into buf from offset 0 (growing buf as needed); length or -1. */
static ssize_t read_all(int fd) {
  for (;;) {
    ssize_t n = pread(fd, buf, buf_cap - 1, 0);
    if (n < 0) return -1;
    if ((size_t)n < buf_cap - 1) {
      buf[n] = '\0';
      return n;
    }
    char *bigger = realloc(buf, buf_cap * 4);
    if (bigger == NULL) return -1;
    buf = bigger;
    buf_cap *= 4;
  }
}

/* The text of a tracked file of a slot in buf, keeping it open while the budget allows. */
static ssize_t read_kept(slot_t *s, int f) {
  if (s->path[f] == NULL) return -1;
  int fd = s->fd[f];
  int kept = fd >= 0;
  if (fd < 0) {
    fd = open(s->path[f], O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (open_files < max_open) {
      s->fd[f] = fd;
      open_files++;
      kept = 1;
    }
  }
  ssize_t n = read_all(fd);
  if (n < 0 || !kept) {
    close(fd);
    if (kept) {
      s->fd[f] = -1;
      open_files--;
    }
  }
  return n;
}

/* A number alone in a file (surrounded by white space), else NaN. */
static double parse_number(const char *text, ssize_t n) {
  if (n <= 0) return NAN;
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || errno != 0 || !isfinite(v)) return NAN;
  while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r') end++;
  return *end == '\0' ? v : NAN;
}

static double count_lines(const char *text, ssize_t n) {
  double lines = 0;
  ssize_t start = 0;
  for (ssize_t i = 0; i < n; i++) {
    if (text[i] == '\n') {
      if (i > start) lines++;
      start = i + 1;
    }
  }
  return start < n ? lines + 1 : lines;
}

/* blkio.throttle.io_serviced: "<maj:min> Read|Write|... <n>" lines summed per operation. */
static void parse_io(const char *text, double *reads, double *writes) {
  *reads = 0;
  *writes = 0;
  const char *line = text;
  while (*line != '\0') {
    const char *end = strchr(line, '\n');
    if (end == NULL) end = line + strlen(line);
    const char *op = memchr(line, ' ', end - line);
    if (op != NULL) {
      op++;
      const char *sp = memchr(op, ' ', end - op);
      if (sp != NULL) {
        char *numEnd;
        double v = strtod(sp + 1, &numEnd);
        if (numEnd > sp + 1 && isfinite(v)) {
          if (sp - op == 4 && strncmp(op, "Read", 4) == 0) *reads += v;
          else if (sp - op == 5 && strncmp(op, "Write", 5) == 0) *writes += v;
        }
      }
    }
    line = *end == '\0' ? end : end + 1;
  }
}

/* /proc/<pid>/net/dev: receive bytes (1st field) and transmit bytes (9th) summed, lo left out. */
static void parse_net_dev(const char *text, double *in, double *out) {
  *in = 0;
  *out = 0;
  const char *line = text;
  for (int no = 0; *line != '\0'; no++) {
    const char *end = strchr(line, '\n');
    if (end == NULL) end = line + strlen(line);
    const char *colon = no < 2 ? NULL : memchr(line, ':', end - line);
    if (colon != NULL) {
      const char *name = line;
      while (name < colon && (*name == ' ' || *name == '\t')) name++;
      const char *nameEnd = colon;
      while (nameEnd > name && (nameEnd[-1] == ' ' || nameEnd[-1] == '\t')) nameEnd--;
      if (!(nameEnd - name == 2 && strncmp(name, "lo", 2) == 0)) {
        const char *p = colon + 1;
        for (int field = 0; field <= 8 && p < end; field++) {
          while (p < end && (*p == ' ' || *p == '\t')) p++;
          double v = 0;
          const char *start = p;
          while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
          if (p == start) break;
          if (field == 0) *in += v;
          else if (field == 8) *out += v;
        }
      }
    }
    line = *end == '\0' ? end : end + 1;
  }
}

static void read_slot(slot_t *s, int want_cpu, double *v) {
  for (int k = 0; k < V_COUNT; k++) v[k] = NAN;
  ssize_t n = read_kept(s, F_MEMORY);
  if (n >= 0) v[V_MEMORY] = parse_number(buf, n);
  if (want_cpu) {
    n = read_kept(s, F_CPU);
    if (n >= 0) v[V_CPU] = parse_number(buf, n);
  }
  n = read_kept(s, F_IO);
  if (n >= 0) parse_io(buf, &v[V_READS], &v[V_WRITES]);
  char pid[32] = "";
  n = read_kept(s, F_PROCS);
  if (n >= 0) {
    v[V_PROCS] = count_lines(buf, n);
    // Any process of the container shares its network namespace: the first listed will do.
    size_t len = strcspn(buf, "\n");
    const char *p = buf;
    while (len > 0 && (*p == ' ' || *p == '\t')) p++, len--;
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r')) len--;
    if (len > 0 && len < sizeof pid) {
      memcpy(pid, p, len);
      pid[len] = '\0';
    }
  }
  n = read_kept(s, F_PIDS);
  if (n >= 0) v[V_THREADS] = parse_number(buf, n);
  if (isnan(v[V_THREADS])) {
    n = read_kept(s, F_TASKS);
    if (n >= 0) v[V_THREADS] = count_lines(buf, n);
  }
  if (pid[0] != '\0') {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s/net/dev", s->proc_root, pid) < (int)sizeof path) {
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        n = read_all(fd);
        close(fd);
        if (n >= 0) parse_net_dev(buf, &v[V_NET_IN], &v[V_NET_OUT]);
      }
    }
  }
}

static void close_slot(slot_t *s) {
  for (int f = 0; f < F_COUNT; f++) {
    if (s->fd[f] >= 0) {
      close(s->fd[f]);
      open_files--;
    }
    free(s->path[f]);
    s->path[f] = NULL;
    s->fd[f] = -1;
  }
  free(s->proc_root);
  s->proc_root = NULL;
  s->used = 0;
}

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, "HERD_NATIVE", "cgroup reader: " #call " failed"); \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

/* A JavaScript string argument as a malloc'd C string ("" gives NULL: no such file). */
static int string_arg(napi_env env, napi_value v, char **out) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return 0;
  if (len == 0) {
    *out = NULL;
    return 1;
  }
  *out = malloc(len + 1);
  if (*out == NULL) return 0;
  return napi_get_value_string_utf8(env, v, *out, len + 1, &len) == napi_ok;
}

static napi_value track(napi_env env, napi_callback_info info) {
  size_t argc = F_COUNT + 1;
  napi_value argv[F_COUNT + 1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != F_COUNT + 1) {
    napi_throw_type_error(env, "HERD_NATIVE", "track(memoryUsage, cpuUsage, ioServiced, procs, pidsCurrent, tasks, procRoot) takes 7 strings");
    return NULL;
  }
  int i = 0;
  while (i < slot_cap && slots[i].used) i++;
  if (i == slot_cap) {
    int cap = slot_cap == 0 ? 256 : slot_cap * 2;
    slot_t *more = realloc(slots, sizeof(slot_t) * cap);
    if (more == NULL) {
      napi_throw_error(env, "HERD_NATIVE", "cgroup reader: out of memory");
      return NULL;
    }
    memset(more + slot_cap, 0, sizeof(slot_t) * (cap - slot_cap));
    for (int k = slot_cap; k < cap; k++)
      for (int f = 0; f < F_COUNT; f++) more[k].fd[f] = -1;
    slots = more;
    slot_cap = cap;
  }
  slot_t *s = &slots[i];
  s->used = 1;
  int ok = 1;
  for (int f = 0; f < F_COUNT; f++) ok = ok && string_arg(env, argv[f], &s->path[f]);
  ok = ok && string_arg(env, argv[F_COUNT], &s->proc_root);
  if (!ok || s->proc_root == NULL) {
    close_slot(s);
    napi_throw_type_error(env, "HERD_NATIVE", "track() takes 7 strings, the last one (procRoot) not empty");
    return NULL;
  }
  napi_value result;
  CHECK(napi_create_int32(env, i, &result));
  return result;
}

/* The one integer argument of a call; 0 (with a JavaScript exception pending) when it is not one. */
static int int32_arg(napi_env env, napi_callback_info info, int32_t *n) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], n) != napi_ok) {
    napi_throw_type_error(env, "HERD_NATIVE", "expected one integer argument");
    return 0;
  }
  return 1;
}

static napi_value untrack(napi_env env, napi_callback_info info) {
  int32_t i;
  if (!int32_arg(env, info, &i)) return NULL;
  if (i >= 0 && i < slot_cap && slots[i].used) close_slot(&slots[i]);
  return NULL;
}

/*
 * The arrays of a round call: `ids_v` an Int32Array of which `count_v` entries are used, and
 * `out_v` a Float64Array with room for `per_entry` values per entry. 0 (with a JavaScript
 * exception pending, naming `what`) when they are not that.
 */
static int round_args(napi_env env, napi_value ids_v, napi_value count_v, napi_value out_v, size_t per_entry, const char *what,
                      const int32_t **ids, int32_t *count, double **out) {
  napi_typedarray_type type;
  size_t ids_len, out_len;
  void *ids_data, *out_data;
  if (napi_get_typedarray_info(env, ids_v, &type, &ids_len, &ids_data, NULL, NULL) != napi_ok || type != napi_int32_array ||
      napi_get_value_int32(env, count_v, count) != napi_ok ||
      napi_get_typedarray_info(env, out_v, &type, &out_len, &out_data, NULL, NULL) != napi_ok || type != napi_float64_array ||
      *count < 0 || (size_t)*count > ids_len || out_len < (size_t)*count * per_entry) {
    napi_throw_type_error(env, "HERD_NATIVE", what);
    return 0;
  }
  *ids = ids_data;
  *out = out_data;
  return 1;
}

static napi_value read_round(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  const int32_t *ids;
  int32_t count;
  double *out;
  bool want_cpu;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!round_args(env, argv[0], argv[1], argv[3], V_COUNT, "read(slots: Int32Array, count, cpuUsage, out: Float64Array of 8 values per slot)", &ids, &count, &out)) return NULL;
  CHECK(napi_get_value_bool(env, argv[2], &want_cpu));
  for (int32_t k = 0; k < count; k++) {
    int32_t i = ids[k];
    if (i >= 0 && i < slot_cap && slots[i].used) read_slot(&slots[i], want_cpu, out + (size_t)k * V_COUNT);
    else
      for (int j = 0; j < V_COUNT; j++) out[(size_t)k * V_COUNT + j] = NAN;
  }
  return NULL;
}

static napi_value file_sizes(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  const int32_t *fds;
  int32_t count;
  double *out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!round_args(env, argv[0], argv[1], argv[2], 1, "fileSizes(fds: Int32Array, count, out: Float64Array as long)", &fds, &count, &out)) return NULL;
  struct stat st;
  for (int32_t k = 0; k < count; k++) out[k] = fds[k] >= 0 && fstat(fds[k], &st) == 0 ? (double)st.st_size : -1;
  return NULL;
}

static napi_value set_max_open(napi_env env, napi_callback_info info) {
  int32_t n;
  if (!int32_arg(env, info, &n)) return NULL;
  max_open = n < 0 ? 0 : n;
  return NULL;
}

static napi_value get_open_files(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(napi_create_int32(env, open_files, &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  if (buf == NULL) {
    buf_cap = 16 * 1024;
    buf = malloc(buf_cap);
  }
  napi_property_descriptor props[] = {
      {"track", NULL, track, NULL, NULL, NULL, napi_default_method, NULL},
      {"untrack", NULL, untrack, NULL, NULL, NULL, napi_default_method, NULL},
      {"read", NULL, read_round, NULL, NULL, NULL, napi_default_method, NULL},
      {"setMaxOpen", NULL, set_max_open, NULL, NULL, NULL, napi_default_method, NULL},
      {"openFiles", NULL, get_open_files, NULL, NULL, NULL, napi_default_method, NULL},
      {"fileSizes", NULL, file_sizes, NULL, NULL, NULL, napi_default_method, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
