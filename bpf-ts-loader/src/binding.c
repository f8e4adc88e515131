/*
 * bpf-ts-loader native layer: a thin Node-API shim over libbpf.
 *
 * It only moves bytes: map keys/values, iterator output and ring buffer
 * records go to JavaScript as opaque Buffers; all decoding, validation of
 * user input and error wording lives in index.js. Errors thrown from here are
 * plain Error objects carrying { errno, op, libbpfLog } which index.js turns
 * into BpfError / BpfLoadError; misuse throws "Usage: ..." TypeErrors.
 */
#define _GNU_SOURCE /* setns(), CLONE_NEWNET */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <uv.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OBJ_MAGIC 0x6270666fu    /* "bpfo" */
#define READER_MAGIC 0x62706672u /* "bpfr" */
#define REC_HDR 8u
#define ROUND8(n) (((n) + 7u) & ~(size_t)7u)

#define CHECK(call)                                                         \
	do {                                                                \
		if ((call) != napi_ok)                                      \
			return throw_last(env, #call);                      \
	} while (0)

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		napi_fatal_error("bpf-ts-loader", NAPI_AUTO_LENGTH, "out of memory", NAPI_AUTO_LENGTH);
	return q;
}

/* ------------------------------------------------------------------ */
/* libbpf log capture                                                 */
/* ------------------------------------------------------------------ */

/*
 * libbpf has one process-wide print callback. Output is routed to the buffer
 * of whichever call is running on *this thread* (worker threads each have
 * their own), so the verifier log and libbpf's explanation of a failure can
 * travel with the error instead of going to stderr.
 */
struct logbuf {
	char *s;
	size_t len, cap;
};
static __thread struct logbuf *cur_log;
static bool log_to_stderr; /* BPF_TS_LOADER_DEBUG=1: echo everything, debug level included */

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (log_to_stderr) {
		va_list ap2;
		va_copy(ap2, ap);
		vfprintf(stderr, fmt, ap2);
		va_end(ap2);
	}
	struct logbuf *lb = cur_log;
	if (!lb || level == LIBBPF_DEBUG)
		return 0;
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n <= 0)
		return 0;
	if (lb->len + n + 1 > lb->cap) {
		lb->cap = (lb->len + n + 1) * 2;
		lb->s = xrealloc(lb->s, lb->cap);
	}
	vsnprintf(lb->s + lb->len, n + 1, fmt, ap);
	lb->len += n;
	return n;
}

static void log_begin(struct logbuf *lb)
{
	memset(lb, 0, sizeof(*lb));
	cur_log = lb;
}

static void log_end(struct logbuf *lb)
{
	(void)lb;
	cur_log = NULL;
}

static void log_free(struct logbuf *lb)
{
	free(lb->s);
	lb->s = NULL;
}

/* ------------------------------------------------------------------ */
/* errors                                                             */
/* ------------------------------------------------------------------ */

static napi_value throw_last(napi_env env, const char *what)
{
	bool pending = false;
	napi_is_exception_pending(env, &pending);
	if (!pending) {
		const napi_extended_error_info *info = NULL;
		napi_get_last_error_info(env, &info);
		char msg[256];
		snprintf(msg, sizeof(msg), "bpf-ts-loader internal N-API failure in %s: %s", what,
			 info && info->error_message ? info->error_message : "unknown");
		napi_throw_error(env, NULL, msg);
	}
	return NULL;
}

static napi_value usage(napi_env env, const char *msg)
{
	napi_throw_type_error(env, NULL, msg);
	return NULL;
}

/* err is a positive errno or LIBBPF_ERRNO__* value. */
static napi_value throw_bpf(napi_env env, const char *op, int err, struct logbuf *lb)
{
	char desc[128], msg[512];
	libbpf_strerror(err, desc, sizeof(desc));
	snprintf(msg, sizeof(msg), "%s: %s", op, desc);
	napi_value e, m, v;
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
	napi_create_error(env, NULL, m, &e);
	napi_create_int32(env, err, &v);
	napi_set_named_property(env, e, "errno", v);
	napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &v);
	napi_set_named_property(env, e, "op", v);
	napi_create_string_utf8(env, lb && lb->s ? lb->s : "", lb ? lb->len : 0, &v);
	napi_set_named_property(env, e, "libbpfLog", v);
	napi_throw(env, e);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* handles                                                            */
/* ------------------------------------------------------------------ */

struct reader;

struct obj {
	uint32_t magic;
	napi_env env;
	struct bpf_object *bpf;
	struct bpf_link **links; /* one slot per program, in bpf_object order */
	int nprogs;
	struct reader *readers;
	bool load_attempted, loaded, closed;
};

struct batch {
	struct batch *next;
	char *data;
	size_t len;
};

struct reader {
	uint32_t magic;
	napi_env env;
	struct obj *owner;
	struct reader *next; /* in owner->readers */
	struct ring_buffer *rb;
	uv_poll_t poll;
	uv_timer_t timer;
	int handles_open;
	napi_ref cb_ref, self_ref, owner_ref;
	napi_async_context actx;
	napi_async_cleanup_hook_handle hook;
	uint64_t poll_ms;
	size_t max_batch, round_cap;
	char *stage; /* batch being filled; becomes the external Buffer's memory */
	size_t stage_len, stage_cap;
	struct batch *ready, *ready_tail;
	size_t ready_bytes;
	uint64_t records, bytes, batches, oversized, empty;
	int busy; /* >0 while consuming or inside onBatch: the struct must not be freed */
	bool closed, finalized, round_full;
};

static void *get_handle(napi_env env, napi_value v, uint32_t magic)
{
	void *p = NULL;
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
	    napi_get_value_external(env, v, &p) != napi_ok || !p || *(uint32_t *)p != magic) {
		usage(env, "Usage: internal handle expected (do not call the native module directly)");
		return NULL;
	}
	return p;
}

static struct obj *get_obj(napi_env env, napi_value v, bool must_be_open)
{
	struct obj *o = get_handle(env, v, OBJ_MAGIC);
	if (o && must_be_open && o->closed) {
		napi_throw_error(env, "ERR_BPF_CLOSED", "BpfObject is closed; open the file again");
		return NULL;
	}
	return o;
}

/* Copies a JS string into buf; returns false (TypeError thrown) if not a string. */
static bool get_str(napi_env env, napi_value v, char *buf, size_t cap, const char *what)
{
	size_t n;
	if (napi_get_value_string_utf8(env, v, buf, cap, &n) != napi_ok) {
		char msg[160];
		snprintf(msg, sizeof(msg), "Usage: %s must be a string", what);
		usage(env, msg);
		return false;
	}
	if (n >= cap - 1) {
		usage(env, "Usage: string argument too long");
		return false;
	}
	return true;
}

static bool get_buf(napi_env env, napi_value v, void **data, size_t *len, const char *what)
{
	bool is;
	if (napi_is_buffer(env, v, &is) != napi_ok || !is ||
	    napi_get_buffer_info(env, v, data, len) != napi_ok) {
		char msg[160];
		snprintf(msg, sizeof(msg), "Usage: %s must be a Buffer", what);
		usage(env, msg);
		return false;
	}
	return true;
}

#define ARGS(n)                                                          \
	size_t argc = n;                                                 \
	napi_value argv[n];                                              \
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) \
		return throw_last(env, "napi_get_cb_info");              \
	if (argc < n)                                                    \
		return usage(env, "Usage: missing arguments");

static struct bpf_program *find_prog(napi_env env, struct obj *o, napi_value name, int *idx)
{
	char s[256];
	if (!get_str(env, name, s, sizeof(s), "program name"))
		return NULL;
	struct bpf_program *p;
	int i = 0;
	bpf_object__for_each_program(p, o->bpf)
	{
		if (strcmp(bpf_program__name(p), s) == 0) {
			if (idx)
				*idx = i;
			return p;
		}
		i++;
	}
	napi_value e, m, c;
	char msg[320];
	snprintf(msg, sizeof(msg), "no program named '%s'", s);
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
	napi_create_string_utf8(env, "ERR_BPF_UNKNOWN_PROGRAM", NAPI_AUTO_LENGTH, &c);
	napi_create_type_error(env, c, m, &e);
	napi_throw(env, e);
	return NULL;
}

static struct bpf_map *find_map(napi_env env, struct obj *o, napi_value name)
{
	char s[256];
	if (!get_str(env, name, s, sizeof(s), "map name"))
		return NULL;
	struct bpf_map *m = bpf_object__find_map_by_name(o->bpf, s);
	if (!m) {
		napi_value e, msg, c;
		char buf[320];
		snprintf(buf, sizeof(buf), "no map named '%s'", s);
		napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &msg);
		napi_create_string_utf8(env, "ERR_BPF_UNKNOWN_MAP", NAPI_AUTO_LENGTH, &c);
		napi_create_type_error(env, c, msg, &e);
		napi_throw(env, e);
	}
	return m;
}

static int loaded_map_fd(napi_env env, struct bpf_map *m)
{
	int fd = bpf_map__fd(m);
	if (fd < 0)
		napi_throw_error(env, "ERR_BPF_NOT_LOADED", "map has no kernel object yet: call load() first");
	return fd;
}

static bool is_percpu(enum bpf_map_type t)
{
	return t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_PERCPU_HASH ||
	       t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

/* The kernel copies per-CPU values in 8-byte aligned slots, one per possible CPU. */
static size_t value_bytes(struct bpf_map *m)
{
	size_t vs = bpf_map__value_size(m);
	if (is_percpu(bpf_map__type(m)))
		return ROUND8(vs) * (size_t)libbpf_num_possible_cpus();
	return vs;
}

static void set_str(napi_env env, napi_value o, const char *k, const char *v)
{
	napi_value s;
	napi_create_string_utf8(env, v ? v : "", NAPI_AUTO_LENGTH, &s);
	napi_set_named_property(env, o, k, s);
}

static void set_num(napi_env env, napi_value o, const char *k, double v)
{
	napi_value n;
	napi_create_double(env, v, &n);
	napi_set_named_property(env, o, k, n);
}

/* ------------------------------------------------------------------ */
/* ring buffer reader                                                 */
/* ------------------------------------------------------------------ */

static void reader_maybe_free(struct reader *r)
{
	if (r->finalized && r->closed && r->handles_open == 0 && r->busy == 0) {
		r->magic = 0;
		free(r);
	}
}

static void free_batches(struct reader *r)
{
	while (r->ready) {
		struct batch *b = r->ready;
		r->ready = b->next;
		free(b->data);
		free(b);
	}
	r->ready_tail = NULL;
	r->ready_bytes = 0;
	free(r->stage);
	r->stage = NULL;
	r->stage_len = r->stage_cap = 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct reader *r = h->data;
	if (--r->handles_open > 0)
		return;
	/* Only now may Node finish tearing down the environment/loop. */
	if (r->hook) {
		napi_remove_async_cleanup_hook(r->hook);
		r->hook = NULL;
	}
	reader_maybe_free(r);
}

/* in_teardown: called from the env cleanup hook, where JS must not run and
 * N-API references are about to be dropped by Node anyway. */
static void reader_close(struct reader *r, bool in_teardown)
{
	if (r->closed)
		return;
	r->closed = true;
	if (r->owner) {
		struct reader **pp = &r->owner->readers;
		while (*pp && *pp != r)
			pp = &(*pp)->next;
		if (*pp)
			*pp = r->next;
		r->owner = NULL;
	}
	/* Stop polling before ring_buffer__free() closes the epoll fd libuv watches. */
	uv_poll_stop(&r->poll);
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->poll, on_handle_closed);
	uv_close((uv_handle_t *)&r->timer, on_handle_closed);
	ring_buffer__free(r->rb);
	r->rb = NULL;
	free_batches(r);
	if (!in_teardown) {
		napi_delete_reference(r->env, r->cb_ref);
		napi_delete_reference(r->env, r->self_ref);
		napi_delete_reference(r->env, r->owner_ref);
		napi_async_destroy(r->env, r->actx);
	}
	r->cb_ref = r->self_ref = r->owner_ref = NULL;
}

static void reader_teardown_hook(napi_async_cleanup_hook_handle handle, void *arg)
{
	struct reader *r = arg;
	r->hook = handle;
	reader_close(r, true);
}

static void reader_finalize(napi_env env, void *data, void *hint)
{
	struct reader *r = data;
	/* Normally unreachable while open (self_ref pins it); at env teardown it can be. */
	reader_close(r, true);
	r->finalized = true;
	reader_maybe_free(r);
}

static void flush_stage(struct reader *r)
{
	if (!r->stage_len)
		return;
	struct batch *b = xrealloc(NULL, sizeof(*b));
	b->next = NULL;
	b->data = r->stage;
	b->len = r->stage_len;
	if (r->ready_tail)
		r->ready_tail->next = b;
	else
		r->ready = b;
	r->ready_tail = b;
	r->ready_bytes += b->len;
	r->stage = NULL;
	r->stage_len = r->stage_cap = 0;
}

#define STOP_ROUND (-EAGAIN)

/*
 * Runs inside ring_buffer__consume(). libbpf advances the consumer position
 * right after we return, so the record must be copied out now; JS is never
 * called from here (it could close the reader and free the ring under us).
 */
static int on_sample(void *ctx, void *data, size_t size)
{
	struct reader *r = ctx;
	size_t need = REC_HDR + ROUND8(size);
	if (r->stage_len && r->stage_len + need > r->max_batch)
		flush_stage(r);
	/* Grow by doubling up to maxBatchBytes rather than allocating it up front:
	 * a batch holds its memory until JS drops the Buffer, so small batches
	 * must stay small (large reallocs are mremap()s in glibc, not copies). */
	if (r->stage_len + need > r->stage_cap) {
		size_t cap = r->stage_cap ? r->stage_cap * 2 : 4096;
		size_t limit = r->max_batch > r->stage_len + need ? r->max_batch : r->stage_len + need;
		if (cap < r->stage_len + need)
			cap = r->stage_len + need;
		if (cap > limit)
			cap = limit;
		r->stage = xrealloc(r->stage, cap);
		r->stage_cap = cap;
	}
	unsigned char *p = (unsigned char *)r->stage + r->stage_len;
	uint32_t n = (uint32_t)size;
	p[0] = n & 0xff, p[1] = (n >> 8) & 0xff, p[2] = (n >> 16) & 0xff, p[3] = n >> 24;
	memset(p + 4, 0, 4);
	memcpy(p + REC_HDR, data, size);
	memset(p + REC_HDR + size, 0, need - REC_HDR - size);
	r->stage_len += need;
	r->records++;
	r->bytes += size;
	if (size == 0)
		r->empty++;
	if (need > r->max_batch)
		r->oversized++;
	/* Bound memory held between deliveries when the producer outruns us;
	 * the rest stays in the ring for the next wake-up/tick. */
	if (r->ready_bytes + r->stage_len >= r->round_cap) {
		r->round_full = true;
		return STOP_ROUND;
	}
	return 0;
}

static void free_batch_data(napi_env env, void *data, void *hint)
{
	free(data);
}

/* Returns false if onBatch threw during a synchronous consume() (exception left pending). */
static bool deliver(struct reader *r, bool sync)
{
	napi_env env = r->env;
	while (r->ready && !r->closed) {
		struct batch *b = r->ready;
		r->ready = b->next;
		if (!r->ready)
			r->ready_tail = NULL;
		r->ready_bytes -= b->len;

		napi_handle_scope scope;
		napi_open_handle_scope(env, &scope);
		napi_value buf, cb, recv;
		/* Hand the staging memory over as-is (no second copy); runtimes with the
		 * V8 sandbox refuse external buffers, so fall back to one copy there. */
		if (napi_create_external_buffer(env, b->len, b->data, free_batch_data, NULL, &buf) != napi_ok) {
			napi_create_buffer_copy(env, b->len, b->data, NULL, &buf);
			free(b->data);
		}
		free(b);
		r->batches++;
		napi_get_reference_value(env, r->cb_ref, &cb);
		/* napi_make_callback() does ToObject(recv): undefined would throw. */
		napi_get_global(env, &recv);
		if (sync) {
			if (napi_call_function(env, recv, cb, 1, &buf, NULL) != napi_ok) {
				napi_close_handle_scope(env, scope);
				return false;
			}
		} else {
			/* make_callback runs process.nextTick/microtasks afterwards, like any I/O callback. */
			napi_make_callback(env, r->actx, recv, cb, 1, &buf, NULL);
			bool pending = false;
			napi_is_exception_pending(env, &pending);
			if (pending) {
				napi_value exc;
				napi_get_and_clear_last_exception(env, &exc);
				napi_fatal_exception(env, exc); /* -> process 'uncaughtException' */
			}
		}
		napi_close_handle_scope(env, scope);
	}
	return true;
}

/* One consume round: copy out up to round_cap bytes, then hand batches to JS. */
static bool drain_round(struct reader *r, bool sync)
{
	r->round_full = false;
	/* Only our own STOP_ROUND can make this fail in libbpf 1.x. */
	ring_buffer__consume(r->rb);
	flush_stage(r);
	return deliver(r, sync);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct reader *r = h->data;
	if (r->closed || r->busy)
		return;
	r->busy++;
	drain_round(r, false);
	r->busy--;
	reader_maybe_free(r);
}

static void on_timer(uv_timer_t *h)
{
	on_poll((uv_poll_t *)h, 0, 0); /* both carry the reader in ->data */
}

/* ringOpen(obj, mapName, onBatch, pollIntervalMs, maxBatchBytes) */
static napi_value ring_open(napi_env env, napi_callback_info info)
{
	ARGS(5);
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	struct bpf_map *m = find_map(env, o, argv[1]);
	if (!m)
		return NULL;
	if (bpf_map__type(m) != BPF_MAP_TYPE_RINGBUF)
		return usage(env, "Usage: openRingBuffer(map, onBatch, options?) needs a BPF_MAP_TYPE_RINGBUF map");
	int fd = loaded_map_fd(env, m);
	if (fd < 0)
		return NULL;
	napi_valuetype t;
	CHECK(napi_typeof(env, argv[2], &t));
	if (t != napi_function)
		return usage(env, "Usage: openRingBuffer(map, onBatch, options?): onBatch must be a function");
	double poll_ms, max_batch;
	if (napi_get_value_double(env, argv[3], &poll_ms) != napi_ok ||
	    napi_get_value_double(env, argv[4], &max_batch) != napi_ok)
		return usage(env, "Usage: pollIntervalMs and maxBatchBytes must be numbers");

	struct reader *r = xrealloc(NULL, sizeof(*r));
	memset(r, 0, sizeof(*r));
	r->magic = READER_MAGIC;
	r->env = env;
	r->poll_ms = (uint64_t)poll_ms;
	r->max_batch = (size_t)max_batch;
	r->round_cap = r->max_batch * 4 > (4u << 20) ? r->max_batch * 4 : (4u << 20);

	struct logbuf lb;
	log_begin(&lb);
	r->rb = ring_buffer__new(fd, on_sample, r, NULL);
	int err = errno;
	log_end(&lb);
	if (!r->rb) {
		free(r);
		napi_value ret = throw_bpf(env, "ring_buffer__new", err, &lb);
		log_free(&lb);
		return ret;
	}
	log_free(&lb);

	uv_loop_t *loop;
	napi_get_uv_event_loop(env, &loop);
	int uerr = uv_poll_init(loop, &r->poll, ring_buffer__epoll_fd(r->rb));
	if (uerr) {
		ring_buffer__free(r->rb);
		free(r);
		return throw_bpf(env, "uv_poll_init", -uerr, NULL);
	}
	uv_timer_init(loop, &r->timer);
	r->poll.data = r->timer.data = r;
	r->handles_open = 2;

	napi_value ext, name;
	if (napi_create_external(env, r, reader_finalize, NULL, &ext) != napi_ok) {
		r->finalized = true; /* no JS object will ever own it: free once the handles close */
		reader_close(r, true);
		return throw_last(env, "napi_create_external");
	}
	/* Like a socket, an open reader stays alive without a JS reference. */
	napi_create_reference(env, ext, 1, &r->self_ref);
	napi_create_reference(env, argv[2], 1, &r->cb_ref);
	napi_create_reference(env, argv[0], 1, &r->owner_ref); /* keeps the BpfObject from GC */
	napi_create_string_utf8(env, "BpfRingBufferReader", NAPI_AUTO_LENGTH, &name);
	napi_async_init(env, ext, name, &r->actx);
	napi_add_async_cleanup_hook(env, reader_teardown_hook, r, &r->hook);
	uv_poll_start(&r->poll, UV_READABLE, on_poll);
	if (r->poll_ms > 0)
		uv_timer_start(&r->timer, on_timer, r->poll_ms, r->poll_ms);
	r->owner = o;
	r->next = o->readers;
	o->readers = r;
	return ext;
}

static napi_value ring_consume(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct reader *r = get_handle(env, argv[0], READER_MAGIC);
	if (!r)
		return NULL;
	napi_value ret;
	if (r->closed) {
		napi_create_double(env, 0, &ret);
		return ret;
	}
	if (r->busy) {
		napi_throw_error(env, "ERR_BPF_REENTRANT", "consume() cannot be called from inside onBatch");
		return NULL;
	}
	uint64_t before = r->records;
	bool ok = true;
	r->busy++;
	do
		ok = drain_round(r, true);
	while (ok && r->round_full && !r->closed);
	r->busy--;
	if (!ok)
		return NULL; /* onBatch threw: rethrown from consume(); undelivered batches stay queued */
	napi_create_double(env, (double)(r->records - before), &ret);
	return ret;
}

static napi_value ring_stats(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct reader *r = get_handle(env, argv[0], READER_MAGIC);
	if (!r)
		return NULL;
	napi_value o;
	CHECK(napi_create_object(env, &o));
	set_num(env, o, "records", (double)r->records);
	set_num(env, o, "bytes", (double)r->bytes);
	set_num(env, o, "batches", (double)r->batches);
	set_num(env, o, "oversizedRecords", (double)r->oversized);
	set_num(env, o, "emptyRecords", (double)r->empty);
	return o;
}

static napi_value ring_ref(napi_env env, napi_callback_info info)
{
	ARGS(2);
	struct reader *r = get_handle(env, argv[0], READER_MAGIC);
	bool on;
	if (!r)
		return NULL;
	if (napi_get_value_bool(env, argv[1], &on) != napi_ok)
		return usage(env, "Usage: ringRef(handle, boolean)");
	if (!r->closed) {
		if (on) {
			uv_ref((uv_handle_t *)&r->poll);
			uv_ref((uv_handle_t *)&r->timer);
		} else {
			uv_unref((uv_handle_t *)&r->poll);
			uv_unref((uv_handle_t *)&r->timer);
		}
	}
	return NULL;
}

/* ringRelease(batch): frees a delivered batch's memory now rather than when the garbage collector
 * gets to its Buffer: the ArrayBuffer is detached (the Buffer then has length 0), which releases
 * its backing store and so runs free_batch_data. A reader that keeps nothing of a batch past
 * onBatch calls it there; batches awaiting collection otherwise pile up in malloc's arenas (the
 * fewer objects the caller allocates, the rarer collections are). */
static napi_value ring_release(napi_env env, napi_callback_info info)
{
	ARGS(1);
	bool is_buffer = false;
	napi_value ab;
	if (napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer ||
	    napi_get_typedarray_info(env, argv[0], NULL, NULL, NULL, &ab, NULL) != napi_ok)
		return usage(env, "Usage: releaseBatch(batch: Buffer) takes a batch onBatch was given");
	bool detached = false;
	if (napi_is_detached_arraybuffer(env, ab, &detached) == napi_ok && detached)
		return NULL; /* released already */
	if (napi_detach_arraybuffer(env, ab) != napi_ok)
		return usage(env, "Usage: releaseBatch(batch: Buffer): this Buffer's memory cannot be released (not a batch from onBatch?)");
	return NULL;
}

static napi_value ring_close(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct reader *r = get_handle(env, argv[0], READER_MAGIC);
	if (r)
		reader_close(r, false);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* BPF object                                                         */
/* ------------------------------------------------------------------ */

static void obj_teardown_hook(void *arg);

static void obj_close(struct obj *o, bool in_teardown)
{
	if (o->closed)
		return;
	o->closed = true;
	while (o->readers)
		reader_close(o->readers, in_teardown);
	for (int i = 0; i < o->nprogs; i++)
		bpf_link__destroy(o->links[i]);
	free(o->links);
	o->links = NULL;
	bpf_object__close(o->bpf);
	o->bpf = NULL;
	if (!in_teardown)
		napi_remove_env_cleanup_hook(o->env, obj_teardown_hook, o);
}

static void obj_teardown_hook(void *arg)
{
	obj_close(arg, true);
}

static void obj_finalize(napi_env env, void *data, void *hint)
{
	struct obj *o = data;
	obj_close(o, false);
	o->magic = 0;
	free(o);
}

static napi_value obj_open(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char path[4096];
	if (!get_str(env, argv[0], path, sizeof(path), "path"))
		return NULL;
	struct logbuf lb;
	log_begin(&lb);
	struct bpf_object *bpf = bpf_object__open_file(path, NULL);
	int err = errno;
	log_end(&lb);
	if (!bpf) {
		napi_value ret = throw_bpf(env, "bpf_object__open_file", err, &lb);
		log_free(&lb);
		return ret;
	}
	log_free(&lb);
	struct obj *o = xrealloc(NULL, sizeof(*o));
	memset(o, 0, sizeof(*o));
	o->magic = OBJ_MAGIC;
	o->env = env;
	o->bpf = bpf;
	struct bpf_program *p;
	bpf_object__for_each_program(p, bpf) o->nprogs++;
	o->links = xrealloc(NULL, sizeof(*o->links) * (o->nprogs + 1));
	memset(o->links, 0, sizeof(*o->links) * (o->nprogs + 1));
	napi_value ext;
	if (napi_create_external(env, o, obj_finalize, NULL, &ext) != napi_ok) {
		bpf_object__close(bpf);
		free(o->links);
		free(o);
		return throw_last(env, "napi_create_external");
	}
	napi_add_env_cleanup_hook(env, obj_teardown_hook, o);
	return ext;
}

static napi_value obj_close_js(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj *o = get_obj(env, argv[0], false);
	if (o)
		obj_close(o, false);
	return NULL;
}

static napi_value obj_programs(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	napi_value arr, item, b;
	CHECK(napi_create_array(env, &arr));
	struct bpf_program *p;
	uint32_t i = 0;
	bpf_object__for_each_program(p, o->bpf)
	{
		napi_create_object(env, &item);
		set_str(env, item, "name", bpf_program__name(p));
		set_str(env, item, "section", bpf_program__section_name(p));
		napi_get_boolean(env, bpf_program__autoload(p), &b);
		napi_set_named_property(env, item, "autoload", b);
		napi_set_element(env, arr, i++, item);
	}
	return arr;
}

/* Kernel-side statistics of each loaded program (bpf_prog_info). recursion_misses counts
 * invocations the kernel skipped because the same program was already running on that CPU
 * (e.g. a softirq interrupting it): events the program never saw. run_cnt/run_time_ns are
 * kept only while sysctl kernel.bpf_stats_enabled=1. */
static napi_value obj_program_stats(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	napi_value arr, item, v;
	CHECK(napi_create_array(env, &arr));
	struct bpf_program *p;
	uint32_t i = 0;
	bpf_object__for_each_program(p, o->bpf)
	{
		int fd = bpf_program__fd(p);
		if (fd < 0)
			continue;
		struct bpf_prog_info pi;
		__u32 len = sizeof(pi);
		memset(&pi, 0, sizeof(pi));
		if (bpf_obj_get_info_by_fd(fd, &pi, &len) != 0)
			return throw_bpf(env, "bpf_obj_get_info_by_fd", errno, NULL);
		napi_create_object(env, &item);
		set_str(env, item, "name", bpf_program__name(p));
		napi_create_double(env, (double)pi.run_cnt, &v);
		napi_set_named_property(env, item, "runCount", v);
		napi_create_double(env, (double)pi.run_time_ns, &v);
		napi_set_named_property(env, item, "runTimeNs", v);
		napi_create_double(env, (double)pi.recursion_misses, &v);
		napi_set_named_property(env, item, "recursionMisses", v);
		napi_set_element(env, arr, i++, item);
	}
	return arr;
}

static napi_value obj_maps(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	napi_value arr, item;
	CHECK(napi_create_array(env, &arr));
	struct bpf_map *m;
	uint32_t i = 0;
	bpf_object__for_each_map(m, o->bpf)
	{
		napi_create_object(env, &item);
		set_str(env, item, "name", bpf_map__name(m));
		set_num(env, item, "type", bpf_map__type(m));
		set_str(env, item, "typeName", libbpf_bpf_map_type_str(bpf_map__type(m)));
		set_num(env, item, "keySize", bpf_map__key_size(m));
		set_num(env, item, "valueSize", bpf_map__value_size(m));
		set_num(env, item, "maxEntries", bpf_map__max_entries(m));
		napi_set_element(env, arr, i++, item);
	}
	return arr;
}

static bool is_global_data_sec(const char *s)
{
	return strncmp(s, ".rodata", 7) == 0 || strncmp(s, ".data", 5) == 0 || strncmp(s, ".bss", 4) == 0;
}

/* Variables come from the BTF DATASECs, whose offsets libbpf fixed up at open time. */
static napi_value obj_constants(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	napi_value arr, item;
	CHECK(napi_create_array(env, &arr));
	struct btf *btf = bpf_object__btf(o->bpf);
	if (!btf)
		return arr;
	uint32_t k = 0, n = btf__type_cnt(btf);
	for (uint32_t id = 1; id < n; id++) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		if (!btf_is_datasec(t))
			continue;
		const char *sec = btf__name_by_offset(btf, t->name_off);
		if (!sec || !is_global_data_sec(sec))
			continue;
		const struct btf_var_secinfo *vsi = btf_var_secinfos(t);
		for (int i = 0; i < btf_vlen(t); i++, vsi++) {
			const struct btf_type *vt = btf__type_by_id(btf, vsi->type);
			napi_create_object(env, &item);
			set_str(env, item, "name", btf__name_by_offset(btf, vt->name_off));
			set_str(env, item, "section", sec);
			set_num(env, item, "offset", vsi->offset);
			set_num(env, item, "size", vsi->size);
			napi_set_element(env, arr, k++, item);
		}
	}
	return arr;
}

/* libbpf names internal maps "<obj name prefix><section>", e.g. "main.rodata". */
static struct bpf_map *internal_map_for(struct bpf_object *bpf, const char *sec)
{
	struct bpf_map *m;
	size_t sl = strlen(sec);
	bpf_object__for_each_map(m, bpf)
	{
		const char *name = bpf_map__name(m);
		size_t nl = strlen(name);
		if (bpf_map__is_internal(m) && nl >= sl && strcmp(name + nl - sl, sec) == 0)
			return m;
	}
	return NULL;
}

/* setData(obj, section, offset, bytes): patch the initial image of a global-data map. */
static napi_value obj_set_data(napi_env env, napi_callback_info info)
{
	ARGS(4);
	struct obj *o = get_obj(env, argv[0], true);
	char sec[256];
	uint32_t off;
	void *data;
	size_t len;
	if (!o || !get_str(env, argv[1], sec, sizeof(sec), "section") ||
	    !get_buf(env, argv[3], &data, &len, "value"))
		return NULL;
	if (napi_get_value_uint32(env, argv[2], &off) != napi_ok)
		return usage(env, "Usage: offset must be a number");
	if (o->load_attempted)
		return usage(env, "Usage: setConstants() must be called before load() (.rodata is frozen by the kernel at load)");
	struct bpf_map *m = internal_map_for(o->bpf, sec);
	if (!m)
		return usage(env, "Usage: no internal map backs this section (was the variable optimized away?)");
	size_t size;
	const void *cur = bpf_map__initial_value(m, &size);
	if (!cur || (size_t)off + len > size)
		return usage(env, "Usage: variable lies outside its section's initial image");
	char *img = xrealloc(NULL, size);
	memcpy(img, cur, size);
	memcpy(img + off, data, len);
	int err = bpf_map__set_initial_value(m, img, size);
	free(img);
	if (err)
		return throw_bpf(env, "bpf_map__set_initial_value", -err, NULL);
	return NULL;
}

static napi_value obj_set_max_entries(napi_env env, napi_callback_info info)
{
	ARGS(3);
	struct obj *o = get_obj(env, argv[0], true);
	uint32_t n;
	if (!o)
		return NULL;
	struct bpf_map *m = find_map(env, o, argv[1]);
	if (!m)
		return NULL;
	if (napi_get_value_uint32(env, argv[2], &n) != napi_ok)
		return usage(env, "Usage: setMaxEntries(map, maxEntries): maxEntries must be a number");
	int err = bpf_map__set_max_entries(m, n);
	if (err)
		return throw_bpf(env, "bpf_map__set_max_entries", -err, NULL);
	return NULL;
}

static napi_value obj_set_autoload(napi_env env, napi_callback_info info)
{
	ARGS(3);
	struct obj *o = get_obj(env, argv[0], true);
	bool on;
	if (!o)
		return NULL;
	struct bpf_program *p = find_prog(env, o, argv[1], NULL);
	if (!p)
		return NULL;
	if (napi_get_value_bool(env, argv[2], &on) != napi_ok)
		return usage(env, "Usage: setAutoload(program, autoload): autoload must be a boolean");
	int err = bpf_program__set_autoload(p, on);
	if (err)
		return throw_bpf(env, "bpf_program__set_autoload", -err, NULL);
	return NULL;
}

static napi_value obj_set_pin_path(napi_env env, napi_callback_info info)
{
	ARGS(3);
	struct obj *o = get_obj(env, argv[0], true);
	char path[4096];
	napi_valuetype t;
	if (!o)
		return NULL;
	struct bpf_map *m = find_map(env, o, argv[1]);
	if (!m)
		return NULL;
	CHECK(napi_typeof(env, argv[2], &t));
	if (t != napi_null && !get_str(env, argv[2], path, sizeof(path), "pin path"))
		return NULL;
	int err = bpf_map__set_pin_path(m, t == napi_null ? NULL : path);
	if (err)
		return throw_bpf(env, "bpf_map__set_pin_path", -err, NULL);
	return NULL;
}

static napi_value obj_load(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	/* libbpf refuses a second bpf_object__load(), even after a failed one. */
	if (o->load_attempted)
		return usage(env, "Usage: load() can be attempted only once per BpfObject; open the file again");
	o->load_attempted = true;
	struct logbuf lb;
	log_begin(&lb);
	int err = bpf_object__load(o->bpf);
	log_end(&lb);
	napi_value ret = NULL;
	if (err)
		ret = throw_bpf(env, "bpf_object__load", -err, &lb);
	else
		o->loaded = true;
	log_free(&lb);
	return ret;
}

static napi_value attach_one(napi_env env, struct obj *o, struct bpf_program *p, int idx)
{
	if (!o->loaded)
		return usage(env, "Usage: attach() needs a loaded object: call load() first");
	if (bpf_program__fd(p) < 0)
		return usage(env, "Usage: program was not loaded (autoload is off)");
	if (o->links[idx])
		return usage(env, "Usage: program is already attached");
	struct logbuf lb;
	log_begin(&lb);
	struct bpf_link *l = bpf_program__attach(p);
	int err = errno;
	log_end(&lb);
	if (!l) {
		char op[300];
		snprintf(op, sizeof(op), "bpf_program__attach('%s')", bpf_program__name(p));
		throw_bpf(env, op, err, &lb);
	}
	log_free(&lb);
	o->links[idx] = l; /* NULL on failure */
	return NULL;
}

static napi_value obj_attach(napi_env env, napi_callback_info info)
{
	ARGS(2);
	struct obj *o = get_obj(env, argv[0], true);
	int idx;
	if (!o)
		return NULL;
	struct bpf_program *p = find_prog(env, o, argv[1], &idx);
	if (!p)
		return NULL;
	return attach_one(env, o, p, idx);
}

static napi_value obj_attach_all(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	if (!o->loaded)
		return usage(env, "Usage: attachAll() needs a loaded object: call load() first");
	struct bpf_program *p;
	int i = 0;
	bool pending = false;
	bpf_object__for_each_program(p, o->bpf)
	{
		/* Iterators have no standing attachment: they run per read (runIterator). */
		if (bpf_program__fd(p) >= 0 && !o->links[i] &&
		    strncmp(bpf_program__section_name(p), "iter", 4) != 0) {
			attach_one(env, o, p, i);
			napi_is_exception_pending(env, &pending);
			if (pending)
				return NULL;
		}
		i++;
	}
	return NULL;
}

static napi_value obj_run_iterator(napi_env env, napi_callback_info info)
{
	ARGS(3);
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	struct bpf_program *p = find_prog(env, o, argv[1], NULL);
	if (!p)
		return NULL;
	/* Optional network namespace: iter/tcp, iter/udp, ... walk the namespace of the task
	 * that creates the iterator (bpf_iter_create), so this thread enters it for that one
	 * call and returns at once. Only this thread moves; no JavaScript runs meanwhile. */
	char nspath[4096] = "";
	napi_valuetype nst;
	napi_typeof(env, argv[2], &nst);
	if (nst == napi_string && !get_str(env, argv[2], nspath, sizeof(nspath), "netnsPath"))
		return NULL;
	if (!o->loaded || bpf_program__fd(p) < 0)
		return usage(env, "Usage: runIterator() needs a loaded iterator program: call load() first");
	struct logbuf lb;
	log_begin(&lb);
	struct bpf_link *l = bpf_program__attach_iter(p, NULL);
	int err = errno;
	log_end(&lb);
	if (!l) {
		throw_bpf(env, "bpf_program__attach_iter", err, &lb);
		log_free(&lb);
		return NULL;
	}
	log_free(&lb);
	int fd, saved = -1, target = -1;
	if (nspath[0]) {
		saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		target = open(nspath, O_RDONLY | O_CLOEXEC);
		if (saved < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
			err = errno;
			if (saved >= 0)
				close(saved);
			if (target >= 0)
				close(target);
			bpf_link__destroy(l);
			return throw_bpf(env, "setns(netnsPath)", err, NULL);
		}
		close(target);
	}
	fd = bpf_iter_create(bpf_link__fd(l));
	err = errno;
	if (saved >= 0) {
		/* Must not fail: staying in the other namespace would move every later socket. */
		if (setns(saved, CLONE_NEWNET) < 0)
			abort();
		close(saved);
	}
	errno = err;
	if (fd < 0) {
		err = errno;
		bpf_link__destroy(l);
		return throw_bpf(env, "bpf_iter_create", err, NULL);
	}
	size_t len = 0, cap = 16384;
	char *buf = xrealloc(NULL, cap);
	for (;;) {
		if (len == cap)
			buf = xrealloc(buf, cap *= 2);
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			free(buf);
			close(fd);
			bpf_link__destroy(l);
			return throw_bpf(env, "read(iterator)", err, NULL);
		}
		if (n == 0)
			break;
		len += n;
	}
	close(fd);
	bpf_link__destroy(l);
	napi_value out;
	napi_status st = napi_create_buffer_copy(env, len, buf, NULL, &out);
	free(buf);
	if (st != napi_ok)
		return throw_last(env, "napi_create_buffer_copy");
	return out;
}

/* ------------------------------------------------------------------ */
/* map access                                                         */
/* ------------------------------------------------------------------ */

/* Common prologue: resolve (obj, mapName, key) and check the key size. */
static struct bpf_map *map_args(napi_env env, napi_value *argv, int *fd, void **key)
{
	struct obj *o = get_obj(env, argv[0], true);
	if (!o)
		return NULL;
	struct bpf_map *m = find_map(env, o, argv[1]);
	if (!m)
		return NULL;
	size_t klen;
	if (key) {
		if (!get_buf(env, argv[2], key, &klen, "key"))
			return NULL;
		if (klen != bpf_map__key_size(m)) {
			usage(env, "Usage: key length must equal the map's keySize");
			return NULL;
		}
	}
	if ((*fd = loaded_map_fd(env, m)) < 0)
		return NULL;
	return m;
}

static napi_value map_lookup(napi_env env, napi_callback_info info)
{
	ARGS(3);
	int fd;
	void *key, *data;
	struct bpf_map *m = map_args(env, argv, &fd, &key);
	if (!m)
		return NULL;
	napi_value out;
	CHECK(napi_create_buffer(env, value_bytes(m), &data, &out));
	if (bpf_map_lookup_elem(fd, key, data)) {
		if (errno == ENOENT) {
			napi_get_undefined(env, &out);
			return out;
		}
		return throw_bpf(env, "bpf_map_lookup_elem", errno, NULL);
	}
	return out;
}

static napi_value map_update(napi_env env, napi_callback_info info)
{
	ARGS(5);
	int fd;
	void *key, *val;
	size_t vlen;
	uint32_t flags;
	struct bpf_map *m = map_args(env, argv, &fd, &key);
	if (!m || !get_buf(env, argv[3], &val, &vlen, "value"))
		return NULL;
	if (vlen != value_bytes(m))
		return usage(env, "Usage: value length must equal valueSize (per-CPU maps: roundup(valueSize, 8) * possibleCpus)");
	if (napi_get_value_uint32(env, argv[4], &flags) != napi_ok)
		return usage(env, "Usage: flags must be a number");
	if (bpf_map_update_elem(fd, key, val, flags))
		return throw_bpf(env, "bpf_map_update_elem", errno, NULL);
	return NULL;
}

static napi_value map_delete(napi_env env, napi_callback_info info)
{
	ARGS(3);
	int fd;
	void *key;
	struct bpf_map *m = map_args(env, argv, &fd, &key);
	if (!m)
		return NULL;
	napi_value out;
	if (bpf_map_delete_elem(fd, key)) {
		if (errno != ENOENT)
			return throw_bpf(env, "bpf_map_delete_elem", errno, NULL);
		napi_get_boolean(env, false, &out);
		return out;
	}
	napi_get_boolean(env, true, &out);
	return out;
}

static napi_value map_keys(napi_env env, napi_callback_info info)
{
	ARGS(2);
	int fd;
	struct bpf_map *m = map_args(env, argv, &fd, NULL);
	if (!m)
		return NULL;
	size_t ks = bpf_map__key_size(m);
	uint32_t limit = bpf_map__max_entries(m), n = 0;
	napi_value arr, item;
	CHECK(napi_create_array(env, &arr));
	char *prev = xrealloc(NULL, ks), *next = xrealloc(NULL, ks);
	bool first = true;
	/* A hash walk restarts from the first key if the current one is deleted
	 * concurrently; the max_entries bound keeps that from looping forever. */
	while (n < limit) {
		if (bpf_map_get_next_key(fd, first ? NULL : prev, next)) {
			int err = errno;
			if (err == ENOENT)
				break;
			free(prev);
			free(next);
			return throw_bpf(env, "bpf_map_get_next_key", err, NULL);
		}
		napi_create_buffer_copy(env, ks, next, NULL, &item);
		napi_set_element(env, arr, n++, item);
		memcpy(prev, next, ks);
		first = false;
	}
	free(prev);
	free(next);
	return arr;
}

/* CLOCK_BOOTTIME in ns as a BigInt: the clock of bpf_ktime_get_boot_ns(), for turning
 * event times into wall-clock time. */
static napi_value clock_boottime_ns(napi_env env, napi_callback_info info)
{
	struct timespec ts;
	napi_value v;
	(void)info;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	napi_create_bigint_uint64(env, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec, &v);
	return v;
}

static napi_value possible_cpus(napi_env env, napi_callback_info info)
{
	napi_value v;
	int n = libbpf_num_possible_cpus();
	if (n < 0)
		return throw_bpf(env, "libbpf_num_possible_cpus", -n, NULL);
	napi_create_int32(env, n, &v);
	return v;
}

/* src/caps.c: dropCapabilities() (capset/prctl on every thread). */
napi_value caps_drop(napi_env env, napi_callback_info info);
/* src/notify.c: notifyServiceManager() (the sd_notify datagram). */
napi_value notify_send(napi_env env, napi_callback_info info);

/* ------------------------------------------------------------------ */

NAPI_MODULE_INIT()
{
	static const struct {
		const char *name;
		napi_callback fn;
	} fns[] = {
		{ "open", obj_open },
		{ "close", obj_close_js },
		{ "programs", obj_programs },
		{ "programStats", obj_program_stats },
		{ "maps", obj_maps },
		{ "constants", obj_constants },
		{ "setData", obj_set_data },
		{ "setMaxEntries", obj_set_max_entries },
		{ "setAutoload", obj_set_autoload },
		{ "setPinPath", obj_set_pin_path },
		{ "load", obj_load },
		{ "attach", obj_attach },
		{ "attachAll", obj_attach_all },
		{ "runIterator", obj_run_iterator },
		{ "mapLookup", map_lookup },
		{ "mapUpdate", map_update },
		{ "mapDelete", map_delete },
		{ "mapKeys", map_keys },
		{ "possibleCpus", possible_cpus },
		{ "clockBoottimeNs", clock_boottime_ns },
		{ "dropCapabilities", caps_drop },
		{ "notifyServiceManager", notify_send },
		{ "ringOpen", ring_open },
		{ "ringConsume", ring_consume },
		{ "ringStats", ring_stats },
		{ "ringRef", ring_ref },
		{ "ringClose", ring_close },
		{ "ringRelease", ring_release },
	};
	const char *dbg = getenv("BPF_TS_LOADER_DEBUG");
	log_to_stderr = dbg && *dbg && strcmp(dbg, "0") != 0;
	libbpf_set_print(print_fn); /* process-wide and idempotent: fine per worker */
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		napi_value f;
		if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f) != napi_ok ||
		    napi_set_named_property(env, exports, fns[i].name, f) != napi_ok)
			return NULL;
	}
	return exports;
}
