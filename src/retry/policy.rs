//! The seed's `RetryConfig` with its defaults, validated, and the pure delay schedule.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a computed delay is randomised so that many deliveries failing together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exact delays (`false` or `"none"`).
    None,
    /// ±10% of the delay (`true` or `"proportional"`), the seed's behaviour and the default.
    #[default]
    Proportional,
    /// Uniform in `[0, delay]` (`"full"`), best at spreading a thundering herd.
    Full,
}

impl Jitter {
    /// Applies this jitter to `delay_ms` given `r` uniform in `[0, 1)`.
    pub fn apply(self, delay_ms: f64, r: f64) -> f64 {
        let r = r.clamp(0.0, 1.0);
        match self {
            Jitter::None => delay_ms,
            Jitter::Proportional => delay_ms * (0.9 + 0.2 * r),
            Jitter::Full => delay_ms * r,
        }
    }
}

impl Serialize for Jitter {
    /// The seed's booleans for the seed's two modes, so existing clients read back what they wrote.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Jitter::None => s.serialize_bool(false),
            Jitter::Proportional => s.serialize_bool(true),
            Jitter::Full => s.serialize_str("full"),
        }
    }
}

/// The schema of both serde impls above: `true`/`false`/`"full"` are written; `"none"` and
/// `"proportional"` are also read.
impl utoipa::PartialSchema for Jitter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some("`true`: ±10 % of each delay (proportional); `false`: no jitter.")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["none", "proportional", "full"]))
                    .description(Some(
                        "`\"full\"`: uniform in [0, delay]; `\"none\"` and `\"proportional\"` are read as \
                         `false` and `true` and written back as booleans.",
                    )),
            )
            .description(Some(
                "How each retry delay is randomised; it never compounds from one delay into the next. \
                 Written as `true`, `false` or `\"full\"`.",
            ))
            .default(serde_json::to_value(Jitter::default()).ok())
            .into()
    }
}

impl utoipa::ToSchema for Jitter {}

impl<'de> Deserialize<'de> for Jitter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("jitter must be true, false, \"none\", \"proportional\" or \"full\"")
        })? {
            Raw::Bool(true) => Ok(Jitter::Proportional),
            Raw::Bool(false) => Ok(Jitter::None),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl std::str::FromStr for Jitter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "false" => Ok(Jitter::None),
            "proportional" | "true" => Ok(Jitter::Proportional),
            "full" => Ok(Jitter::Full),
            other => Err(format!(
                "unknown jitter mode `{other}`: expected true, false, \"none\", \"proportional\" or \"full\""
            )),
        }
    }
}

/// Per-endpoint retry settings, field for field the seed's `RetryConfig` (delays in milliseconds).
///
/// Missing fields take the seed's defaults, so `{"maxRetries": 3}` is a complete config.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
#[schema(default)]
pub struct RetryConfig {
    /// Retries after the first attempt; `1 + max_retries` attempts in all.
    #[schema(maximum = 100)] // limits::MAX_RETRIES
    pub max_retries: u32,
    /// Delay after the first failed attempt, in ms.
    #[schema(maximum = 604_800_000)] // limits::MAX_DELAY_MS
    pub initial_delay: u64,
    /// Upper bound on any computed delay, in ms (before jitter); at least `initialDelay`.
    #[schema(maximum = 604_800_000)] // limits::MAX_DELAY_MS
    pub max_delay: u64,
    /// Growth factor from one delay to the next.
    #[schema(minimum = 1.0, maximum = 100.0)] // 1 to limits::MAX_MULTIPLIER
    pub backoff_multiplier: f64,
    /// Randomisation of each delay; never compounds from one delay into the next.
    pub jitter: Jitter,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_delay: 1000,
            max_delay: 60_000,
            backoff_multiplier: 2.0,
            jitter: Jitter::Proportional,
        }
    }
}

/// Limits that keep a config meaningful; outside them the config is refused, not clamped.
pub mod limits {
    /// Svix and Stripe stop after days, not hundreds of attempts.
    pub const MAX_RETRIES: u32 = 100;
    /// One week, in ms.
    pub const MAX_DELAY_MS: u64 = 7 * 24 * 3600 * 1000;
    /// Anything larger reaches `max_delay` after one or two steps anyway.
    pub const MAX_MULTIPLIER: f64 = 100.0;
}

/// Why a retry config was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryConfigError {
    /// `maxRetries` above [`limits::MAX_RETRIES`].
    #[error("maxRetries must be at most {}", limits::MAX_RETRIES)]
    TooManyRetries,
    /// A delay above [`limits::MAX_DELAY_MS`].
    #[error("initialDelay and maxDelay must be at most {} ms", limits::MAX_DELAY_MS)]
    DelayTooLong,
    /// `maxDelay` below `initialDelay`.
    #[error("maxDelay must be at least initialDelay")]
    MaxBelowInitial,
    /// `backoffMultiplier` not in `[1, 100]`.
    #[error("backoffMultiplier must be a number from 1 to {}", limits::MAX_MULTIPLIER)]
    BadMultiplier,
}

impl RetryConfig {
    /// Checks the config against [`limits`].
    pub fn validate(&self) -> Result<(), RetryConfigError> {
        if self.max_retries > limits::MAX_RETRIES {
            return Err(RetryConfigError::TooManyRetries);
        }
        if self.initial_delay > limits::MAX_DELAY_MS || self.max_delay > limits::MAX_DELAY_MS {
            return Err(RetryConfigError::DelayTooLong);
        }
        if self.max_delay < self.initial_delay {
            return Err(RetryConfigError::MaxBelowInitial);
        }
        let m = self.backoff_multiplier;
        if !m.is_finite() || !(1.0..=limits::MAX_MULTIPLIER).contains(&m) {
            return Err(RetryConfigError::BadMultiplier);
        }
        Ok(())
    }

    /// Total attempts a delivery may get: the first plus `max_retries`.
    pub fn max_attempts(&self) -> u32 {
        1 + self.max_retries
    }

    /// The un-jittered wait after failed attempt `failed_attempt` (1-based), or `None` when that was
    /// the last attempt: `min(initialDelay × multiplier^(k−1), maxDelay)`.
    pub fn base_delay_ms(&self, failed_attempt: u32) -> Option<f64> {
        if failed_attempt == 0 || failed_attempt > self.max_retries {
            return None;
        }
        let exp = (failed_attempt - 1).min(i32::MAX as u32) as i32;
        let raw = self.initial_delay as f64 * self.backoff_multiplier.powi(exp);
        Some(raw.min(self.max_delay as f64))
    }

    /// The jittered wait after failed attempt `failed_attempt`, with `r` uniform in `[0, 1)`.
    /// Each delay is computed from the schedule, never from the previous jittered delay.
    pub fn delay(&self, failed_attempt: u32, r: f64) -> Option<Duration> {
        let base = self.base_delay_ms(failed_attempt)?;
        let ms = self.jitter.apply(base, r).max(0.0);
        Some(Duration::from_micros((ms * 1000.0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Option<Duration>) -> Option<f64> {
        d.map(|d| d.as_secs_f64())
    }

    #[test]
    fn defaults_are_the_seeds_schedule() {
        let c = RetryConfig { jitter: Jitter::None, ..RetryConfig::default() };
        let delays: Vec<_> = (1..=6).map(|k| secs(c.delay(k, 0.5))).collect();
        assert_eq!(delays, vec![Some(1.0), Some(2.0), Some(4.0), Some(8.0), Some(16.0), None]);
        assert_eq!(c.max_attempts(), 6);
    }

    #[test]
    fn delays_are_capped_by_max_delay() {
        let c = RetryConfig { max_retries: 10, max_delay: 5000, jitter: Jitter::None, ..RetryConfig::default() };
        assert_eq!(secs(c.delay(3, 0.0)), Some(4.0));
        assert_eq!(secs(c.delay(4, 0.0)), Some(5.0));
        assert_eq!(secs(c.delay(10, 0.0)), Some(5.0));
        assert_eq!(c.delay(11, 0.0), None);
    }

    #[test]
    fn huge_exponents_saturate_at_max_delay() {
        let c = RetryConfig {
            max_retries: 100,
            backoff_multiplier: 100.0,
            max_delay: 60_000,
            jitter: Jitter::None,
            ..RetryConfig::default()
        };
        assert_eq!(secs(c.delay(100, 0.0)), Some(60.0));
    }

    #[test]
    fn proportional_jitter_stays_within_ten_percent_and_does_not_compound() {
        let c = RetryConfig::default();
        for k in 1..=5 {
            let base = c.base_delay_ms(k).unwrap();
            let lo = c.delay(k, 0.0).unwrap().as_secs_f64() * 1000.0;
            let hi = c.delay(k, 1.0).unwrap().as_secs_f64() * 1000.0;
            assert!((lo - base * 0.9).abs() < 1e-6, "k={k} lo={lo}");
            assert!((hi - base * 1.1).abs() < 1e-6, "k={k} hi={hi}");
        }
        // The fifth delay is 16 s ± 10% whatever the earlier random draws were: no compounding.
        let fifth = c.delay(5, 1.0).unwrap().as_secs_f64();
        assert!((fifth - 17.6).abs() < 1e-9);
    }

    #[test]
    fn full_jitter_spans_zero_to_delay() {
        let c = RetryConfig { jitter: Jitter::Full, ..RetryConfig::default() };
        assert_eq!(c.delay(3, 0.0), Some(Duration::ZERO));
        assert_eq!(secs(c.delay(3, 0.5)), Some(2.0));
        assert_eq!(secs(c.delay(3, 1.0)), Some(4.0));
    }

    #[test]
    fn zero_retries_means_one_attempt() {
        let c = RetryConfig { max_retries: 0, ..RetryConfig::default() };
        assert_eq!(c.delay(1, 0.5), None);
        assert_eq!(c.max_attempts(), 1);
    }

    #[test]
    fn jitter_accepts_the_seeds_boolean_and_mode_names() {
        let parse = |s: &str| serde_json::from_str::<Jitter>(s);
        assert_eq!(parse("true").unwrap(), Jitter::Proportional);
        assert_eq!(parse("false").unwrap(), Jitter::None);
        assert_eq!(parse("\"full\"").unwrap(), Jitter::Full);
        assert_eq!(parse("\"proportional\"").unwrap(), Jitter::Proportional);
        assert_eq!(parse("\"none\"").unwrap(), Jitter::None);
        assert!(parse("\"sometimes\"").is_err());
        assert!(parse("3").is_err());
        assert_eq!(serde_json::to_string(&Jitter::Proportional).unwrap(), "true");
        assert_eq!(serde_json::to_string(&Jitter::Full).unwrap(), "\"full\"");
    }

    #[test]
    fn partial_configs_take_defaults_and_bad_ones_are_refused() {
        let c: RetryConfig = serde_json::from_str(r#"{"maxRetries": 2}"#).unwrap();
        assert_eq!(c, RetryConfig { max_retries: 2, ..RetryConfig::default() });
        assert!(serde_json::from_str::<RetryConfig>(r#"{"maxRetries": -1}"#).is_err());
        assert!(serde_json::from_str::<RetryConfig>(r#"{"maxRetries": "3"}"#).is_err());
        assert!(serde_json::from_str::<RetryConfig>(r#"{"retries": 3}"#).is_err());
        let bad = |c: RetryConfig| c.validate().unwrap_err();
        let d = RetryConfig::default();
        assert_eq!(bad(RetryConfig { max_retries: 101, ..d }), RetryConfigError::TooManyRetries);
        assert_eq!(bad(RetryConfig { initial_delay: 5000, max_delay: 1000, ..d }), RetryConfigError::MaxBelowInitial);
        assert_eq!(bad(RetryConfig { backoff_multiplier: 0.5, ..d }), RetryConfigError::BadMultiplier);
        assert_eq!(bad(RetryConfig { backoff_multiplier: f64::NAN, ..d }), RetryConfigError::BadMultiplier);
        assert_eq!(bad(RetryConfig { max_delay: u64::MAX, ..d }), RetryConfigError::DelayTooLong);
        assert_eq!(d.validate(), Ok(()));
    }
}
