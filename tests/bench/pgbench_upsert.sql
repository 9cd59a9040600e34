-- tests/bench/pgbench_upsert.sql — the naive design voxd's durable signalling is measured against
-- (scripts/bench.sh): one transaction per voice.update, upserting one voice-state-shaped row
-- (text key, ~400-byte jsonb, bigint version) picked at random among 1000 keys.
-- Table (made by bench.sh): bench_voice_state (key text PRIMARY KEY, data jsonb NOT NULL,
-- version bigint NOT NULL)
\set k random(1, 1000)
\set mute random(0, 1)
INSERT INTO bench_voice_state (key, data, version)
VALUES ('conn-' || :k,
        jsonb_build_object(
            'connection_id', 'conn-' || :k,
            'guild_id', '1000000000001234567',
            'channel_id', '1000000000001234600',
            'user_id', (1000000000001334567 + :k)::text,
            'session_id', 'bench-session-0123456789abcdef',
            'node_id', 'bench',
            'state', 'connected',
            'self_mute', :mute = 1,
            'self_deaf', false,
            'self_video', false,
            'self_stream', false,
            'mute', false,
            'deaf', false,
            'suppress', false,
            'transport', 'srtp',
            'endpoint', '127.0.0.1:50000',
            'joined_at', 1795000000000,
            'request_to_speak_timestamp', null,
            'version', 1),
        1)
ON CONFLICT (key) DO UPDATE
    SET data = jsonb_set(EXCLUDED.data, '{version}', to_jsonb(bench_voice_state.version + 1)),
        version = bench_voice_state.version + 1;
