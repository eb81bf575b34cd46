#!/usr/bin/env python3
"""The SQLite writer's work at fan-out 10, replayed with Python's sqlite3: what each index costs.

Replays the ledger's write pattern on the delivery tables (the schema of migrations/sqlite, as it
stands after the last migration): commits of 33 events, each with 10 pending delivery rows, and
in the same commit the success of the previous commit's deliveries (the update of
`store/sqlite/write.rs`). WAL, synchronous=FULL, an 8 MiB page cache, as the writer sets them.
Prints CPU and wall time per delivery. Python's per-statement overhead is in the figures, so
compare variants with each other, not with the Rust writer.

    python3 benches/sqlite/write_pattern.py base 20000
    python3 benches/sqlite/write_pattern.py completed-index 20000   # the index retention used
    python3 benches/sqlite/write_pattern.py no-by-webhook-index 20000
    python3 benches/sqlite/write_pattern.py no-due-index 20000
    python3 benches/sqlite/write_pattern.py big-commits 20000     # 66 events per commit
    python3 benches/sqlite/write_pattern.py blob-keys 20000       # BLOB ids (event 16, delivery 20, webhook 16 bytes)
    python3 benches/sqlite/write_pattern.py page-16k 20000        # 16 KiB pages, as new files get them now
        # (the other variants keep SQLite's 4 KiB, the page size the figures in BENCHMARKS.md were taken at)
    python3 benches/sqlite/write_pattern.py success-rows-only 20000  # a design not built: the event
        # row lists its targets, and a delivery row is written only with its first outcome
    python3 benches/sqlite/write_pattern.py pending-table 20000   # another: pending work in a table of
        # its own (webhook, due, id), a delivery row written only with its first outcome
"""
import os
import random
import sqlite3
import sys
import tempfile
import time

variant = sys.argv[1] if len(sys.argv) > 1 else "base"
n_events = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
events_per_commit = 66 if variant == "big-commits" else 33
path = os.path.join(tempfile.mkdtemp(prefix="servio-sqlite-"), "w.db")
c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA page_size=%d" % (16384 if variant == "page-16k" else 4096))
c.execute("PRAGMA auto_vacuum=INCREMENTAL")
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=FULL")
c.execute("PRAGMA cache_size=-8192")
c.executescript("""
CREATE TABLE events (id TEXT PRIMARY KEY, event_type TEXT NOT NULL, payload TEXT NOT NULL,
  timestamp TEXT NOT NULL, created_at INTEGER NOT NULL, tenant TEXT, targets TEXT);
CREATE TABLE deliveries (id TEXT PRIMARY KEY, event_id TEXT NOT NULL, webhook_id TEXT NOT NULL,
  status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER,
  created_at INTEGER NOT NULL, last_attempt_at INTEGER, completed_at INTEGER,
  last_status_code INTEGER, last_error TEXT, last_duration_ms INTEGER, last_response_body TEXT,
  probes INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX deliveries_failed ON deliveries (webhook_id, created_at) WHERE status = 'failed';
""")
if variant == "pending-table":
    c.execute("CREATE TABLE pending (webhook_id TEXT NOT NULL, due_at INTEGER NOT NULL, id TEXT NOT NULL, "
              "event_id TEXT NOT NULL, PRIMARY KEY (webhook_id, due_at, id)) WITHOUT ROWID")
if variant != "no-due-index":
    c.execute("CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at, id) WHERE status = 'pending'")
if variant != "no-by-webhook-index":
    c.execute("CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id)")
if variant == "completed-index":  # dropped in migration 10: retention walks ids instead
    c.execute("CREATE INDEX deliveries_completed ON deliveries (status, completed_at) WHERE completed_at IS NOT NULL")

blob = variant == "blob-keys"
hooks = [random.getrandbits(128).to_bytes(16, "big") if blob else "wh_%032x" % random.getrandbits(128)
         for _ in range(10)]
payload = '{"id":"evt_x","event":"order.created","timestamp":"2026-11-29T12:00:00.000Z","data":{"orderId":12345,"total":1234}}'
now = 1_764_000_000_000
# A delivery row written once, with its successful first outcome (the designs not built).
INSERT_SUCCESS = ("INSERT INTO deliveries (id,event_id,webhook_id,status,attempts,created_at,last_attempt_at,"
                  "completed_at,last_status_code,last_duration_ms) VALUES (?,?,?,'success',1,?4,?4,?4 + 2,200,2)")
INSERT_EVENTS = "INSERT INTO events (id,event_type,payload,timestamp,created_at,tenant) VALUES (?,?,?,?,?,?)"
previous = []
t0, cpu0 = time.perf_counter(), time.process_time()
for _ in range(0, n_events, events_per_commit):
    c.execute("BEGIN")
    events, deliveries = [], []
    for _ in range(events_per_commit):
        now += 1
        hex_id = "%016x%016x" % (now, random.getrandbits(64))  # time-ordered, like UUIDv7
        if blob:  # 16-byte event ids, delivery id = event id + 4-byte sequence
            eid = bytes.fromhex(hex_id)
            events.append((eid, "order.created", payload, "2026-11-29T12:00:00.000Z", now, None))
            deliveries += [(eid + s.to_bytes(4, "big"), eid, w, now) for s, w in enumerate(hooks)]
            continue
        events.append(("evt_" + hex_id, "order.created", payload, "2026-11-29T12:00:00.000Z", now, None))
        deliveries += [("dlv_%s%08x" % (hex_id, s), "evt_" + hex_id, w, now) for s, w in enumerate(hooks)]
    if variant == "success-rows-only":
        # The publish commits the event with its targets; the deliveries of the previous commit
        # are written once, with their (successful) first outcome.
        c.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", [e + (",".join(hooks),) for e in events])
        c.executemany(INSERT_SUCCESS, previous)
        previous = deliveries
        c.execute("COMMIT")
        continue
    if variant == "pending-table":
        c.executemany(INSERT_EVENTS, events)
        c.executemany("INSERT INTO pending (id,event_id,webhook_id,due_at) VALUES (?,?,?,?)", deliveries)
        c.executemany("DELETE FROM pending WHERE webhook_id=?3 AND due_at=?4 AND id=?1", previous)
        c.executemany(INSERT_SUCCESS, previous)
        previous = deliveries
        c.execute("COMMIT")
        continue
    c.executemany(INSERT_EVENTS, events)
    c.executemany("INSERT INTO deliveries (id,event_id,webhook_id,status,attempts,next_attempt_at,created_at) "
                  "VALUES (?,?,?,'pending',0,?,?4)", deliveries)
    c.executemany("UPDATE deliveries SET status='success', attempts=1, next_attempt_at=NULL, last_attempt_at=?2, "
                  "completed_at=?3, last_status_code=200, last_error=NULL, last_duration_ms=2, "
                  "last_response_body=NULL WHERE id=?1 AND status='pending'",
                  [(d, now, now + 2) for d in previous])
    previous = [d[0] for d in deliveries]
    c.execute("COMMIT")
t1, cpu1 = time.perf_counter(), time.process_time()
n = n_events * 10
print(f"{variant}: {(cpu1 - cpu0) / n * 1e6:.2f} us CPU, {(t1 - t0) / n * 1e6:.2f} us wall per delivery, "
      f"file {os.path.getsize(path) / 1e6:.1f} MB")
