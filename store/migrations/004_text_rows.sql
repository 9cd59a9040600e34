-- 004: rows are stored as text, not jsonb. The node never queries into them (the integers it
-- selects on have their own columns, filled by the node) and parses them itself at load; jsonb
-- cost a parse of every row in every commit.
ALTER TABLE voxd_voice_states ALTER COLUMN data TYPE text USING data::text;
ALTER TABLE voxd_nonces ALTER COLUMN data TYPE text USING data::text;
ALTER TABLE voxd_calls ALTER COLUMN data TYPE text USING data::text;
ALTER TABLE voxd_server_state ALTER COLUMN data TYPE text USING data::text;
