-- Failed breaker probes per delivery: they are attempts (numbered, logged) that do not spend the
-- delivery's retry budget (1 + maxRetries counts the others).
ALTER TABLE deliveries ADD COLUMN probes INT NOT NULL DEFAULT 0;
