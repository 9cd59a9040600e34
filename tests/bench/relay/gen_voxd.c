/*
 * gen_voxd — relay_gen's setup for voxd: per participant a grant from the RPC (voice.connect,
 * Bearer secret; docs/rpc.md) and a voice WebSocket (Hello, Identify, Ready, Select Protocol
 * "srtp", Session Description; docs/protocol.md "Media: the srtp transport") kept alive with
 * heartbeats until gen_voxd_teardown().
 *
 * Not built yet: the node side of the srtp transport has not landed on main. Until it does this
 * refuses with -ENOSYS, and the benchmark measures voxd's relay core through worker_relay (the
 * rtp_worker alone, static topology) instead.
 */
#include "tests/bench/relay/gen.h"

#include <errno.h>
#include <stdio.h>

int gen_voxd_setup(gen_ctx *g, const gen_voxd_opts *o, gen_voxd **out)
{
    (void)g;
    (void)o;
    *out = NULL;
    fprintf(stderr, "gen_voxd: the srtp transport is not in this voxd yet\n");
    return -ENOSYS;
}

void gen_voxd_teardown(gen_voxd *v)
{
    (void)v;
}
