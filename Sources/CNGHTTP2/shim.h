// CNGHTTP2: <nghttp2/nghttp2.h> for Swift (HTTP/2 framing, HPACK and flow control for the gRPC peer protocol).
#ifndef SPRINGCACHE_CNGHTTP2_SHIM_H
#define SPRINGCACHE_CNGHTTP2_SHIM_H
#include <nghttp2/nghttp2.h>
#endif
