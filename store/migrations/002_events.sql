-- 002: the event outbox, its consumers' acks and remembered RPC replies (idempotency).
CREATE TABLE voxd_events (
    node_id text NOT NULL,
    seq bigint NOT NULL,
    body text NOT NULL,                -- the complete event JSON {"seq":N,...}
    PRIMARY KEY (node_id, seq)
);
CREATE TABLE voxd_consumers (
    node_id text NOT NULL,
    name text NOT NULL,
    acked bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (node_id, name)
);
CREATE TABLE voxd_requests (
    node_id text NOT NULL,
    request_id text NOT NULL,
    fingerprint bytea NOT NULL,        -- SHA-256 of the request
    status integer NOT NULL,           -- HTTP status of the reply
    method text,
    body text NOT NULL,                -- the reply body
    expires_ms bigint NOT NULL,
    PRIMARY KEY (node_id, request_id)
);
CREATE INDEX voxd_requests_expires ON voxd_requests (node_id, expires_ms);
