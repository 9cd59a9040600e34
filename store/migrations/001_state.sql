-- 001: the node's own state. Every table is keyed by (node_id, key) so nodes share one database.
CREATE TABLE voxd_voice_states (
    node_id text NOT NULL,
    key text NOT NULL,                 -- connection_id
    version bigint NOT NULL DEFAULT 0, -- the row's voice-state version (also inside data)
    data jsonb NOT NULL,
    PRIMARY KEY (node_id, key)
);
CREATE TABLE voxd_nonces (
    node_id text NOT NULL,
    key text NOT NULL,                 -- the grant's nonce
    exp_ms bigint NOT NULL,            -- expiry, ms since the epoch (data->'exp')
    data jsonb NOT NULL,
    PRIMARY KEY (node_id, key)
);
CREATE INDEX voxd_nonces_exp ON voxd_nonces (node_id, exp_ms);
CREATE TABLE voxd_calls (
    node_id text NOT NULL,
    key text NOT NULL,                 -- channel_id; data holds absolute ring/idle deadlines
    data jsonb NOT NULL,
    PRIMARY KEY (node_id, key)
);
CREATE TABLE voxd_server_state (
    node_id text NOT NULL,
    key text NOT NULL,                 -- "guild:user"; data is {"mute":b,"deaf":b}
    data jsonb NOT NULL,
    PRIMARY KEY (node_id, key)
);
CREATE TABLE voxd_node_meta (
    node_id text PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0 -- highest event seq ever committed by the node
);
