/*
 * delayline: an emulated WAN link between two network namespaces (the kernel here has no netem).
 *
 *   delayline NS_A NS_B DELAY_US RATE_KBIT QUEUE_BYTES LOSS_PPM SEED
 *
 * Creates a TUN device "wan0" inside each of the two namespaces (paths such as
 * /run/netns/NAME), prints "ready" on stdout, and from then on moves every IP packet read from
 * one device to the other, in each direction independently:
 *   1. random loss: dropped with probability LOSS_PPM / 1e6;
 *   2. rate limit (RATE_KBIT > 0): a FIFO bottleneck serialising RATE_KBIT kbit/s, with a
 *      drop-tail queue of QUEUE_BYTES (a packet that does not fit is dropped);
 *   3. a constant one-way delay of DELAY_US microseconds after serialisation.
 * Runs at real-time priority (SCHED_FIFO 10) when allowed.
 * SIGUSR1 prints one JSON line of counters per direction on stdout; SIGTERM/SIGINT print them
 * and exit. The devices are not persistent: they vanish with the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 32768 /* packets in flight per direction (power of two) */
#define SLOT_BYTES 2048
#define MTU 1500

struct slot { int64_t sent_at; /* ns: leaves the bottleneck */ uint16_t len; unsigned char data[SLOT_BYTES]; };

struct dir {
  int in, out;
  struct slot *ring;
  uint32_t head, tail;      /* tail: next to deliver; head: next free */
  uint32_t queued;          /* first slot still in the bottleneck queue */
  int64_t queue_bytes;      /* bytes waiting for serialisation */
  int64_t busy_until;       /* ns: bottleneck free again */
  uint64_t packets, bytes, lost, dropped, overflow, write_errors;
};

static volatile sig_atomic_t want_stats = 0, want_exit = 0;
static int64_t delay_ns, queue_limit;
static int64_t rate_kbit;
static uint32_t loss_ppm;
static uint64_t rng;

static void on_usr1(int s) { (void)s; want_stats = 1; }
static void on_term(int s) { (void)s; want_exit = 1; }

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static uint32_t next_rand(void) { /* xorshift64* */
  rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
  return (uint32_t)((rng * 2685821657736338717ULL) >> 32);
}

static int tun_in(const char *ns_path) {
  int nsfd = open(ns_path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) { fprintf(stderr, "delayline: open %s: %s\n", ns_path, strerror(errno)); exit(1); }
  if (setns(nsfd, CLONE_NEWNET) < 0) { fprintf(stderr, "delayline: setns %s: %s\n", ns_path, strerror(errno)); exit(1); }
  close(nsfd);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) { perror("delayline: open /dev/net/tun"); exit(1); }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, "wan0", IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { fprintf(stderr, "delayline: TUNSETIFF in %s: %s\n", ns_path, strerror(errno)); exit(1); }
  return fd;
}

/* Reads every packet waiting on d->in and admits it (loss, queue, rate). */
static void admit(struct dir *d, int64_t now) {
  for (int i = 0; i < 4096; i++) {
    if (d->head - d->tail >= SLOTS) { /* ring full: read and count the packet as an overflow drop */
      unsigned char scratch[SLOT_BYTES];
      if (read(d->in, scratch, sizeof scratch) <= 0) return;
      d->overflow++;
      continue;
    }
    struct slot *s = &d->ring[d->head & (SLOTS - 1)];
    ssize_t n = read(d->in, s->data, SLOT_BYTES);
    if (n <= 0) return;
    if (loss_ppm > 0 && next_rand() % 1000000 < loss_ppm) { d->lost++; continue; }
    int64_t start = now;
    if (rate_kbit > 0) {
      if (d->queue_bytes + n > queue_limit) { d->dropped++; continue; }
      if (d->busy_until > start) start = d->busy_until;
      d->busy_until = start + (int64_t)n * 8 * 1000000LL / rate_kbit;
      d->queue_bytes += n;
      s->sent_at = d->busy_until;
    } else {
      s->sent_at = start;
    }
    s->len = (uint16_t)n;
    d->head++;
  }
}

/* Delivers every packet whose time has come; returns the next due time (or INT64_MAX). */
static int64_t deliver(struct dir *d, int64_t now) {
  while (d->queued != d->head && d->ring[d->queued & (SLOTS - 1)].sent_at <= now) {
    d->queue_bytes -= d->ring[d->queued & (SLOTS - 1)].len;
    d->queued++;
  }
  while (d->tail != d->head) {
    struct slot *s = &d->ring[d->tail & (SLOTS - 1)];
    if (s->sent_at + delay_ns > now) return s->sent_at + delay_ns;
    if (write(d->out, s->data, s->len) < 0) d->write_errors++;
    else { d->packets++; d->bytes += s->len; }
    d->tail++;
  }
  return INT64_MAX;
}

static void stats(struct dir *d, const char *name) {
  printf("{\"dir\":\"%s\",\"packets\":%llu,\"bytes\":%llu,\"lost\":%llu,\"dropped\":%llu,\"overflow\":%llu,\"writeErrors\":%llu}\n", name,
    (unsigned long long)d->packets, (unsigned long long)d->bytes, (unsigned long long)d->lost,
    (unsigned long long)d->dropped, (unsigned long long)d->overflow, (unsigned long long)d->write_errors);
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: delayline NS_A NS_B DELAY_US RATE_KBIT QUEUE_BYTES LOSS_PPM SEED\n");
    return 2;
  }
  delay_ns = atoll(argv[3]) * 1000LL;
  rate_kbit = atoll(argv[4]);
  queue_limit = atoll(argv[5]);
  loss_ppm = (uint32_t)atol(argv[6]);
  rng = (uint64_t)atoll(argv[7]) * 0x9E3779B97F4A7C15ULL + 1;
  if (delay_ns < 0 || rate_kbit < 0 || queue_limit < MTU || loss_ppm > 1000000) {
    fprintf(stderr, "delayline: bad arguments (delay >= 0, rate >= 0, queue >= %d bytes, loss <= 1e6 ppm)\n", MTU);
    return 2;
  }
  int a = tun_in(argv[1]);
  int b = tun_in(argv[2]);
  struct dir dirs[2] = { { .in = a, .out = b }, { .in = b, .out = a } };
  for (int i = 0; i < 2; i++) {
    dirs[i].ring = calloc(SLOTS, sizeof(struct slot));
    if (dirs[i].ring == NULL) { perror("delayline: calloc"); return 1; }
  }
  signal(SIGUSR1, on_usr1);
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* the link goes when the process that made it goes */
  /* signals arrive only inside ppoll, so none is missed between the checks and the wait */
  sigset_t blocked, during_poll;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGUSR1); sigaddset(&blocked, SIGTERM); sigaddset(&blocked, SIGINT);
  sigprocmask(SIG_BLOCK, &blocked, &during_poll);
  /* Real-time priority: on a loaded machine a starved delay line would add its own delay and
     bursts, and the link would no longer be the one asked for. It blocks in ppoll when idle. */
  struct sched_param sp = { .sched_priority = 10 };
  if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0)
    fprintf(stderr, "delayline: no real-time priority (%s): timing may suffer when the machine is busy\n", strerror(errno));
  printf("ready\n");
  fflush(stdout);
  struct pollfd pfd[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
  while (!want_exit) {
    if (want_stats) { want_stats = 0; stats(&dirs[0], "ab"); stats(&dirs[1], "ba"); fflush(stdout); }
    int64_t now = now_ns();
    int64_t due = INT64_MAX;
    for (int i = 0; i < 2; i++) { int64_t t = deliver(&dirs[i], now); if (t < due) due = t; }
    struct timespec ts, *tp = NULL;
    if (due != INT64_MAX) {
      int64_t wait = due - now_ns();
      if (wait < 0) wait = 0;
      ts.tv_sec = wait / 1000000000LL;
      ts.tv_nsec = wait % 1000000000LL;
      tp = &ts;
    }
    int r = ppoll(pfd, 2, tp, &during_poll);
    if (r < 0 && errno != EINTR) { perror("delayline: ppoll"); return 1; }
    now = now_ns();
    if (r > 0) {
      if (pfd[0].revents & POLLIN) admit(&dirs[0], now);
      if (pfd[1].revents & POLLIN) admit(&dirs[1], now);
    }
  }
  stats(&dirs[0], "ab");
  stats(&dirs[1], "ba");
  fflush(stdout);
  return 0;
}
