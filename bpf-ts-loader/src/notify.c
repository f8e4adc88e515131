/*
 * notifyServiceManager(): the sd_notify(3) protocol, without libsystemd — one datagram holding
 * the state text ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=...") sent to the AF_UNIX
 * socket the service manager named in $NOTIFY_SOCKET (a path, or "@name" for the abstract
 * namespace). It is here because Node has no unix datagram sockets (dgram is UDP only, net is
 * streams only), and a unit's WatchdogSec= needs exactly this; the JavaScript side reads the
 * environment and decides when to send.
 */
#define _GNU_SOURCE
#include <node_api.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* src/caps.c: an Error with errno and op. */
napi_value throw_errno(napi_env env, const char *op, int err);

/* notifyServiceManager(socketPath: string, state: string): undefined; throws { errno } on failure. */
napi_value notify_send(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	char state[4096];
	size_t plen = 0, slen = 0;
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc != 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &plen) != napi_ok ||
	    napi_get_value_string_utf8(env, argv[1], state, sizeof(state), &slen) != napi_ok) {
		napi_throw_type_error(env, NULL, "Usage: notifyServiceManager(socketPath, state)");
		return NULL;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (plen < 2 || plen >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) {
		napi_throw_type_error(env, NULL, "Usage: notifyServiceManager(): the socket is an absolute path or @abstract name");
		return NULL;
	}
	memcpy(sa.sun_path, path, plen);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace: no trailing NUL, the length says where it ends */
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/'));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return throw_errno(env, "socket(AF_UNIX, SOCK_DGRAM)", errno);
	ssize_t n = sendto(fd, state, slen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	int err = errno;
	close(fd);
	if (n < 0)
		return throw_errno(env, "sendto $NOTIFY_SOCKET", err);
	return NULL;
}
