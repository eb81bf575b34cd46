//! End-to-end tests: real HTTP receivers on 127.0.0.1, real SQLite files, the real actors.

#![allow(unreachable_pub, missing_docs)]

mod api;
mod breaker;
mod cli;
mod cluster;
mod contract;
mod delivery;
mod durability;
mod egress;
mod helpers;
mod host_log;
mod hostile;
mod isolation;
mod load_smoke;
mod pg;
mod process;
mod races;
mod replay;
mod security;
mod storage_faults;
mod store_contract;
mod supervision;
mod tls;
