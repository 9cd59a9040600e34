-- 003: the region's node registry and channel placement (multi-node).
CREATE TABLE voxd_nodes (
    node_id text PRIMARY KEY,
    region text NOT NULL,
    endpoint text NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'draining', 'down'))
);
CREATE INDEX voxd_nodes_region ON voxd_nodes (region, state, heartbeat_at);
CREATE TABLE voxd_placement (
    scope text NOT NULL,               -- guild_id, or "dm" for DM/group-DM calls
    channel_id text NOT NULL,
    node_id text NOT NULL REFERENCES voxd_nodes (node_id),
    placed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, channel_id)
);
CREATE INDEX voxd_placement_node ON voxd_placement (node_id);
