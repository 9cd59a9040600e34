/*
 * voice — the voxd node: the libuv loop's owner of the signalling core, its HTTP/WebSocket edge
 * (libwebsockets on our loop) and the wiring between them. main.c builds a `conf`, creates a node
 * on a loop, runs the loop until the node has shut down (SIGTERM/SIGINT) and frees it.
 *
 * Ownership: the node borrows the loop and the conf (both outlive it). Loop thread only.
 */
#ifndef VOXD_VOICE_H
#define VOXD_VOICE_H

#include "lib/conf.h"

#include <uv.h>

typedef struct voice_node voice_node;

/* Creates the core, binds both listeners and installs the signal handlers. NULL on failure
 * (logged). */
voice_node *voice_node_new(uv_loop_t *loop, const conf *cf);
/* After uv_run() returned (every handle of the node closed): frees what is left. */
void voice_node_free(voice_node *n);

#endif
