//! kojid's retry rules (koji `ClientSession._callMethod`/`_sendCall`):
//!
//! - a fault is final — except `ServerOffline` with `offline_retry`, which is retried
//!   every `offline_retry_interval` seconds for as long as it lasts;
//! - certificate errors are final;
//! - any other failure (connection, timeout, HTTP error status, unreadable answer) is
//!   retried up to `max_retries` times, the first retry at once and then every
//!   `retry_interval` seconds — but only for a logged-in session (kojid does not set
//!   `anon_retry`);
//! - a connection reset on a reused keep-alive connection is retried once at once on
//!   a fresh connection, without counting as a try.
//!
//! A retry resends the identical request with the **same call number**, so a hub that
//! sees call numbers answers `RetryError` instead of running a call twice (see
//! `hub_callnum_check` and docs/hub.md).

use std::time::Duration;

use crate::config::Config;

/// When and how often to retry a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (kojid: `max_retries`, 120).
    pub max_retries: u32,
    /// Pause between retries after the first, immediate one (kojid: 60 s).
    pub retry_interval: Duration,
    /// Retry while the hub says ServerOffline (kojid: True).
    pub offline_retry: bool,
    /// Pause between ServerOffline retries (kojid: 120 s).
    pub offline_retry_interval: Duration,
    /// Retry calls made without a session (kojid: False).
    pub anon_retry: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 120,
            retry_interval: Duration::from_secs(60),
            offline_retry: true,
            offline_retry_interval: Duration::from_secs(120),
            anon_retry: false,
        }
    }
}

impl RetryPolicy {
    /// kojid's policy from kojid.conf.
    pub fn from_config(cfg: &Config) -> RetryPolicy {
        RetryPolicy {
            max_retries: u32::try_from(cfg.kojid.max_retries).unwrap_or(u32::MAX),
            retry_interval: Duration::from_secs(
                u64::try_from(cfg.kojid.retry_interval).unwrap_or(0),
            ),
            offline_retry: cfg.kojid.offline_retry,
            offline_retry_interval: Duration::from_secs(
                u64::try_from(cfg.kojid.offline_retry_interval).unwrap_or(0),
            ),
            anon_retry: false,
        }
    }

    /// No retries at all (logout, tests).
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            retry_interval: Duration::ZERO,
            offline_retry: false,
            offline_retry_interval: Duration::ZERO,
            anon_retry: false,
        }
    }

    /// The pause before retry number `retry` (1-based): none before the first.
    pub fn delay_before(&self, retry: u32) -> Duration {
        if retry <= 1 {
            Duration::ZERO
        } else {
            self.retry_interval
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_retry_is_immediate() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_before(1), Duration::ZERO);
        assert_eq!(p.delay_before(2), Duration::from_secs(60));
        assert_eq!(p.max_retries, 120);
    }
}
