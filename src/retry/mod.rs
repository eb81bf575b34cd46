//! Retry policy: *whether* to retry an attempt ([`classify`](mod@classify)) kept apart from *when* ([`policy`]).
//!
//! Both are pure: the endpoint actor feeds them an attempt's outcome and a random number and gets a
//! verdict and a delay back, so the whole schedule is unit-tested without a clock or a network.

pub mod classify;
pub mod policy;

pub use classify::{AttemptOutcome, Verdict, classify, parse_retry_after};
pub use policy::{Jitter, RetryConfig, RetryConfigError};
