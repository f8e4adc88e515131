/*
 * dropCapabilities(): give up Linux capabilities once they are no longer needed (e.g. after
 * loading and attaching BPF programs), with the raw capset()/prctl() syscalls — no libcap.
 *
 * Capabilities are per *thread* (capabilities(7)): capset() changes only the calling thread.
 * A Node process already runs a dozen threads (libuv's threadpool, V8's platform workers, the
 * inspector's signal thread) before any addon loads, and the threadpool performs file system
 * calls on JavaScript's behalf, so dropping on the main thread alone would leave the
 * capabilities usable. Glibc only broadcasts set*id() to all threads (and libcap's psx needs
 * its pthread_create wrapper in place before the threads exist), so this does its own
 * broadcast: a real-time signal sent with tgkill() to every thread in /proc/self/task, whose
 * handler makes the same syscalls on that thread, and an acknowledgement per thread id.
 * A thread that blocks every signal (Node's inspector signal thread only waits on a semaphore)
 * cannot be reached: it is reported to the caller, never ignored silently.
 */
#define _GNU_SOURCE
#include <node_api.h>

#include <dirent.h>
#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 1024

static uint64_t drop_mask;
static bool drop_bounding;
static atomic_int first_error;
static atomic_int acked_count;
static atomic_int acked_tids[MAX_THREADS];

static pid_t current_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Runs on each thread (also inside the signal handler: raw syscalls only, no allocation). */
static int drop_on_this_thread(void)
{
	/* The bounding set first: dropping from it needs CAP_SETPCAP, which may be in the mask. */
	if (drop_bounding) {
		for (int c = 0; c < 64; c++) {
			if (!(drop_mask & (1ull << c)))
				continue;
			long in = syscall(SYS_prctl, PR_CAPBSET_READ, c, 0, 0, 0);
			if (in == 1 && syscall(SYS_prctl, PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
				return errno;
		}
	}
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	if (syscall(SYS_capget, &h, d) < 0)
		return errno;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
		uint32_t keep = ~(uint32_t)(drop_mask >> (32 * i));
		d[i].effective &= keep;
		d[i].permitted &= keep;
		d[i].inheritable &= keep;
	}
	if (syscall(SYS_capset, &h, d) < 0)
		return errno;
	/* Ambient capabilities go with permitted/inheritable already; lowering is belt and braces
	 * (EINVAL on kernels without ambient sets, ignored). */
	for (int c = 0; c < 64; c++)
		if (drop_mask & (1ull << c))
			syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, c, 0, 0);
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	int err = drop_on_this_thread();
	if (err) {
		int zero = 0;
		atomic_compare_exchange_strong(&first_error, &zero, err);
	}
	int i = atomic_fetch_add(&acked_count, 1);
	if (i < MAX_THREADS)
		atomic_store(&acked_tids[i], (int)current_tid());
	errno = saved;
}

static bool acked(pid_t tid)
{
	int n = atomic_load(&acked_count);
	for (int i = 0; i < n && i < MAX_THREADS; i++)
		if (atomic_load(&acked_tids[i]) == tid)
			return true;
	return false;
}

/* A real-time signal nobody has a handler for (Node and libuv leave them alone). */
static int free_rt_signal(void)
{
	for (int s = SIGRTMAX - 1; s > SIGRTMIN + 2; s--) {
		struct sigaction old;
		if (sigaction(s, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL)
			return s;
	}
	return -1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* An Error with errno and op (also used by notify.c). */
napi_value throw_errno(napi_env env, const char *op, int err)
{
	napi_value e, m, v;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s: %s", op, strerror(err));
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
	napi_create_error(env, NULL, m, &e);
	napi_create_int32(env, err, &v);
	napi_set_named_property(env, e, "errno", v);
	napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &v);
	napi_set_named_property(env, e, "op", v);
	napi_throw(env, e);
	return NULL;
}

/*
 * dropCapabilities(maskLo: number, maskHi: number, bounding: boolean)
 *   → { threads: number, unreached: number[], bounding: boolean }
 * Not reentrant; call from the main thread only (index.js validates the arguments).
 */
napi_value caps_drop(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3];
	uint32_t lo = 0, hi = 0;
	bool bounding = false;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
	    napi_get_value_uint32(env, argv[0], &lo) != napi_ok || napi_get_value_uint32(env, argv[1], &hi) != napi_ok ||
	    napi_get_value_bool(env, argv[2], &bounding) != napi_ok) {
		napi_throw_type_error(env, NULL, "Usage: dropCapabilities(maskLo, maskHi, bounding)");
		return NULL;
	}
	drop_mask = ((uint64_t)hi << 32) | lo;
	/* Dropping from the bounding set needs CAP_SETPCAP; without it, leave the set alone. */
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	if (syscall(SYS_capget, &h, d) < 0)
		return throw_errno(env, "capget", errno);
	drop_bounding = bounding && (d[CAP_SETPCAP / 32].effective & (1u << (CAP_SETPCAP % 32)));
	atomic_store(&first_error, 0);
	atomic_store(&acked_count, 0);

	int sig = free_rt_signal();
	if (sig < 0)
		return throw_errno(env, "dropCapabilities: no free real-time signal", EBUSY);
	struct sigaction sa, old, ign;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (sigaction(sig, &sa, &old) < 0)
		return throw_errno(env, "sigaction", errno);

	pid_t self = current_tid(), pid = getpid();
	int err = drop_on_this_thread();
	int threads = err ? 0 : 1;
	pid_t signalled[MAX_THREADS];
	int nsignalled = 0;
	/* New threads inherit the capabilities of the thread that creates them: rescan until a
	 * round finds no thread we have not signalled yet. */
	for (int round = 0; !err && round < 5; round++) {
		DIR *dir = opendir("/proc/self/task");
		if (!dir) {
			err = errno;
			break;
		}
		int fresh = 0;
		struct dirent *de;
		while ((de = readdir(dir)) && nsignalled < MAX_THREADS) {
			pid_t tid = (pid_t)atoi(de->d_name);
			bool seen = tid <= 0 || tid == self;
			for (int i = 0; !seen && i < nsignalled; i++)
				seen = signalled[i] == tid;
			if (seen)
				continue;
			if (syscall(SYS_tgkill, pid, tid, sig) == 0) {
				signalled[nsignalled++] = tid;
				fresh++;
			}
		}
		closedir(dir);
		if (!fresh)
			break;
		for (int waited = 0; atomic_load(&acked_count) < nsignalled && waited < 1000; waited += 5)
			sleep_ms(5);
	}
	/* SIG_IGN discards what is still pending on threads that block the signal (POSIX), so a
	 * late delivery can never hit the default action (which terminates the process). */
	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigaction(sig, &ign, NULL);
	sigaction(sig, &old, NULL);
	int hint = atomic_load(&first_error);
	if (!err && hint)
		err = hint;
	if (err)
		return throw_errno(env, "capset", err);

	napi_value out, v, arr;
	napi_create_object(env, &out);
	napi_create_array(env, &arr);
	uint32_t nun = 0;
	for (int i = 0; i < nsignalled; i++) {
		if (acked(signalled[i])) {
			threads++;
			continue;
		}
		/* It may have exited meanwhile: only a live thread counts as unreached. */
		if (syscall(SYS_tgkill, pid, signalled[i], 0) < 0)
			continue;
		napi_create_int32(env, signalled[i], &v);
		napi_set_element(env, arr, nun++, v);
	}
	napi_create_int32(env, threads, &v);
	napi_set_named_property(env, out, "threads", v);
	napi_set_named_property(env, out, "unreached", arr);
	napi_get_boolean(env, drop_bounding, &v);
	napi_set_named_property(env, out, "bounding", v);
	return out;
}
