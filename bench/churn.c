// churn — loopback TCP connection churn for `make bench` (issue 6).
//
// Each thread owns its listeners and plays both ends of every connection: connect() to one of
// its listeners, accept() the child, close both in the order the mode asks for. On loopback the
// handshake completes inside connect() (softirq on the same CPU), so a thread needs no partner
// thread and no hand-off: the rate is bounded by the kernel's per-connection work, which is what
// a tracer on sock:inet_sock_set_state slows down.
//
// Modes and the inet_sock_set_state events each connection makes (KERNEL-NOTES "What
// sock:inet_sock_set_state shows"; the listener's own CLOSE->LISTEN / LISTEN->CLOSE are once per
// run, not per connection):
//   client-first  client FIN first: 5 + 5 = 10 events; TIME_WAIT on the client (ephemeral port)
//   server-first  accepted socket FIN first: 10 events; TIME_WAIT on the server (listening port)
//   rst           client SO_LINGER {1, 0} then close: RST, 3 + 3 = 6 events; no TIME_WAIT
// A connect() that fails after choosing a port (EADDRNOTAVAIL from inet_hash_connect) still
// makes CLOSE->SYN_SENT->CLOSE: 2 events, counted in "failedConnects".
//
// Client-first close leaves one TIME_WAIT per connection on the client's 4-tuple. A new connect
// may take over a TIME_WAIT 4-tuple only under net.ipv4.tcp_tw_reuse (2 = loopback only, the
// default) and only once the TIME_WAIT is tcp_tw_reuse_delay old (1 s). So the 4-tuples in use per
// second are bounded by (ephemeral ports) x (destinations): spread destinations over several
// addresses 127.0.0.x and listening ports (--addrs, --ports) to keep that bound far above the rate.
//
// Bounded by time (--duration) and by count (--count, 0 = none). Prints one JSON line to stdout.
// --rate N paces the connections to N per second in all (N / threads per thread, on an absolute
// schedule; a thread that falls more than 50 ms behind does not burst to catch up): the run then
// measures a tracer at a known event rate (10 events per connection in the close-first modes)
// instead of at the highest rate the CPUs allow. 0 (the default) = as fast as possible.
// Build: cc -O2 -pthread -o churn churn.c
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { CLIENT_FIRST, SERVER_FIRST, RST };
static const char *const mode_names[] = {"client-first", "server-first", "rst"};
static const int events_per_conn[] = {10, 10, 6};

static enum mode mode = CLIENT_FIRST;
static int n_threads = 2;
static double duration_s = 10;
static uint64_t max_count; // 0 = unbounded
static int n_addrs = 4;    // 127.0.0.1 .. 127.0.0.n_addrs
static int n_ports = 4;    // listening ports per thread
static int base_port = 20000;
static double rate; // connections per second in all; 0 = unpaced

static atomic_bool stop;
static volatile sig_atomic_t interrupted; // SIGINT/SIGTERM: end early, still print the summary
static atomic_uint_fast64_t started; // connections begun, for --count

struct worker {
	pthread_t tid;
	int index;
	uint64_t connections;      // completed: both ends closed
	uint64_t failed_connects;  // connect() errors (2 events each when a port was chosen)
	uint64_t other_errors;     // accept/read errors
	int first_errno;
	int listeners[64];
};

static void die(const char *what)
{
	fprintf(stderr, "churn: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void note_error(struct worker *w, uint64_t *counter)
{
	(*counter)++;
	if (!w->first_errno)
		w->first_errno = errno;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	struct sockaddr_in dst = {.sin_family = AF_INET};
	const struct linger rst = {.l_onoff = 1, .l_linger = 0};
	unsigned next = 0;
	char byte;
	const double interval = rate > 0 ? n_threads / rate : 0;
	double due = now_s();

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (interval > 0) {
			double now = now_s();
			if (now < due) {
				struct timespec ts = {(time_t)due, (long)((due - (time_t)due) * 1e9)};
				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			} else if (now - due > 0.05) {
				due = now - 0.05;
			}
			due += interval;
			if (atomic_load_explicit(&stop, memory_order_relaxed))
				break;
		}
		if (max_count && atomic_fetch_add_explicit(&started, 1, memory_order_relaxed) >= max_count)
			break;
		// Round-robin over (address, port) so consecutive connects land on different 4-tuple spaces.
		unsigned a = next % n_addrs, p = (next / n_addrs) % n_ports;
		next++;
		dst.sin_addr.s_addr = htonl(0x7f000001u + a);
		dst.sin_port = htons(base_port + w->index * n_ports + p);

		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0)
			die("socket");
		if (connect(c, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
			note_error(w, &w->failed_connects);
			close(c);
			continue;
		}
		int s = accept(w->listeners[p], NULL, NULL);
		if (s < 0) {
			note_error(w, &w->other_errors);
			close(c);
			continue;
		}
		switch (mode) {
		case CLIENT_FIRST:
			close(c);
			// Wait for the FIN so the server side walks CLOSE_WAIT -> LAST_ACK -> CLOSE.
			if (read(s, &byte, 1) != 0)
				note_error(w, &w->other_errors);
			close(s);
			break;
		case SERVER_FIRST:
			close(s);
			if (read(c, &byte, 1) != 0)
				note_error(w, &w->other_errors);
			close(c);
			break;
		case RST:
			setsockopt(c, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
			close(c);
			// ECONNRESET here is the point: the child saw the RST and went to CLOSE.
			if (read(s, &byte, 1) > 0)
				note_error(w, &w->other_errors);
			close(s);
			break;
		}
		w->connections++;
	}
	return NULL;
}

// "tw N" from /proc/net/sockstat of this network namespace: TIME_WAIT sockets left at the end.
static long timewait_now(void)
{
	FILE *f = fopen("/proc/net/sockstat", "r");
	char line[256];
	long tw = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, " tw ");
		if (!strncmp(line, "TCP:", 4) && p)
			tw = strtol(p + 4, NULL, 10);
	}
	fclose(f);
	return tw;
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void usage(void)
{
	fprintf(stderr,
		"Usage: churn [--mode client-first|server-first|rst] [--threads N] [--duration S]\n"
		"             [--count N] [--rate CONN_PER_S] [--addrs N] [--ports N] [--base-port P]\n"
		"Loopback TCP connection churn; prints one JSON line. Run it inside a network namespace.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"mode", required_argument, NULL, 'm'},     {"threads", required_argument, NULL, 't'},
		{"duration", required_argument, NULL, 'd'}, {"count", required_argument, NULL, 'n'},
		{"addrs", required_argument, NULL, 'a'},    {"ports", required_argument, NULL, 'p'},
		{"base-port", required_argument, NULL, 'b'}, {"rate", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "m:t:d:n:a:p:b:r:h", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			if (!strcmp(optarg, "client-first"))
				mode = CLIENT_FIRST;
			else if (!strcmp(optarg, "server-first"))
				mode = SERVER_FIRST;
			else if (!strcmp(optarg, "rst"))
				mode = RST;
			else
				usage();
			break;
		case 't': n_threads = atoi(optarg); break;
		case 'd': duration_s = atof(optarg); break;
		case 'n': max_count = strtoull(optarg, NULL, 10); break;
		case 'a': n_addrs = atoi(optarg); break;
		case 'p': n_ports = atoi(optarg); break;
		case 'b': base_port = atoi(optarg); break;
		case 'r': rate = atof(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || n_threads < 1 || n_threads > 256 || duration_s <= 0 || rate < 0 || n_addrs < 1 ||
	    n_addrs > 254 || n_ports < 1 || n_ports > 64 || base_port < 1 ||
	    base_port + n_threads * n_ports > 65536)
		usage();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	struct worker *workers = calloc(n_threads, sizeof(*workers));
	if (!workers)
		die("calloc");
	// Listeners on INADDR_ANY: every 127.0.0.x is local on lo, so one socket serves all addresses.
	for (int t = 0; t < n_threads; t++) {
		workers[t].index = t;
		for (int p = 0; p < n_ports; p++) {
			struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(base_port + t * n_ports + p)};
			int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
			if (l < 0)
				die("socket");
			setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0)
				die("bind");
			if (listen(l, 128) < 0)
				die("listen");
			workers[t].listeners[p] = l;
		}
	}

	double t0 = now_s();
	for (int t = 0; t < n_threads; t++)
		if ((errno = pthread_create(&workers[t].tid, NULL, run, &workers[t])))
			die("pthread_create");
	// Sleep in small steps so a --count bound that finishes early ends the run early too.
	struct timespec step = {0, 10 * 1000 * 1000};
	while (now_s() - t0 < duration_s && !interrupted) {
		if (max_count && atomic_load(&started) >= max_count + (uint64_t)n_threads)
			break; // every thread has seen the count run out
		nanosleep(&step, NULL);
	}
	atomic_store(&stop, true);
	uint64_t total = 0, failed = 0, other = 0;
	int first_errno = 0;
	for (int t = 0; t < n_threads; t++) {
		pthread_join(workers[t].tid, NULL);
		total += workers[t].connections;
		failed += workers[t].failed_connects;
		other += workers[t].other_errors;
		if (!first_errno)
			first_errno = workers[t].first_errno;
	}
	double elapsed = now_s() - t0;
	long tw = timewait_now();
	for (int t = 0; t < n_threads; t++)
		for (int p = 0; p < n_ports; p++)
			close(workers[t].listeners[p]);

	printf("{\"mode\":\"%s\",\"threads\":%d,\"addrs\":%d,\"portsPerThread\":%d,\"basePort\":%d,"
	       "\"rate\":%.0f,\"durationS\":%.3f,\"connections\":%llu,\"connPerS\":%.0f,\"eventsPerConn\":%d,"
	       "\"failedConnects\":%llu,\"otherErrors\":%llu,\"firstError\":\"%s\",\"timewaitAtEnd\":%ld,"
	       "\"perThread\":[",
	       mode_names[mode], n_threads, n_addrs, n_ports, base_port, rate, elapsed, (unsigned long long)total,
	       total / elapsed, events_per_conn[mode], (unsigned long long)failed, (unsigned long long)other,
	       first_errno ? strerrorname_np(first_errno) ?: "?" : "", tw);
	for (int t = 0; t < n_threads; t++)
		printf("%s%llu", t ? "," : "", (unsigned long long)workers[t].connections);
	printf("]}\n");
	return 0;
}
