// CLibUV: <uv.h> for Swift, plus small helpers for what Swift cannot express directly.
#ifndef SPRINGCACHE_CLIBUV_SHIM_H
#define SPRINGCACHE_CLIBUV_SHIM_H
#include <uv.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <spawn.h>

/// The address of the data pointer shared by every uv handle kind (uv_handle_t.data).
static inline void *sc_uv_handle_get_data(const void *handle) { return ((const uv_handle_t *)handle)->data; }
static inline void sc_uv_handle_set_data(void *handle, void *data) { ((uv_handle_t *)handle)->data = data; }
static inline void *sc_uv_req_get_data(const void *req) { return ((const uv_req_t *)req)->data; }
static inline void sc_uv_req_set_data(void *req, void *data) { ((uv_req_t *)req)->data = data; }

/// Creates a TCP socket bound to addr with SO_REUSEADDR and, if reuseport, SO_REUSEPORT
/// (which must be set before bind for the kernel to share the port between processes).
/// Returns the fd or -errno.
static inline int sc_bind_socket(const struct sockaddr *addr, int reuseport) {
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        int e = errno; close(fd); return -e;
    }
    socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, addr, len) != 0) { int e = errno; close(fd); return -e; }
    return fd;
}

/// Asks the kernel to send SIGTERM to this process when its parent dies (worker processes).
static inline int sc_set_parent_death_signal(void) { return prctl(PR_SET_PDEATHSIG, SIGTERM); }

#endif
