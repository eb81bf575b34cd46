-- Endpoint lifecycle: a secret rotation keeps the previous secret signing beside the new one
-- until the end of its overlap window (Unix ms).
ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
ALTER TABLE webhooks ADD COLUMN previous_secret_until INTEGER;
