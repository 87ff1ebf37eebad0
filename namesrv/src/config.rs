//! The NameServer's configuration (`conf/namesrv.toml`).
//!
//! Every field has a default, so a file only needs what differs; unknown keys are refused so that a
//! typo is an error rather than a silently ignored setting. Durations are in milliseconds in the
//! file (tests need sub-second scans); the command line offers whole seconds.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::NamesrvError;

/// Longest broker timeout or scan interval accepted (one hour): anything longer is a typo, and a
/// dead broker kept in the routes that long would send clients to it for the whole time.
pub const MAX_INTERVAL_MS: u64 = 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamesrvConfig {
    /// Address the remoting server binds (RocketMQ's NameServer port is 9876; port 0 picks a free
    /// one, which tests use).
    pub listen: String,
    /// A broker that has not re-registered for this long is dropped from every route. Brokers
    /// register every 30 s, so the default (RocketMQ's 120 s) tolerates three lost registrations.
    /// A broker may ask for its own timeout in its registration (`heartbeatTimeoutMillis`).
    pub broker_timeout_ms: u64,
    /// How often silent brokers are looked for. A dead broker disappears at most
    /// `broker_timeout_ms + scan_interval_ms` after its last registration (at once when its
    /// connection closes).
    pub scan_interval_ms: u64,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen: "0.0.0.0:9876".into(),
            broker_timeout_ms: 120_000,
            scan_interval_ms: 5_000,
        }
    }
}

impl NamesrvConfig {
    /// Reads a TOML file (not validated: call [`Self::validate`] after applying overrides).
    pub fn load(path: &Path) -> Result<NamesrvConfig, NamesrvError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NamesrvError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| NamesrvError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<NamesrvConfig, NamesrvError> {
        toml::from_str(text).map_err(|e| NamesrvError::Config(e.to_string()))
    }

    /// Checks every limit; the NameServer refuses to start on a bad value.
    pub fn validate(&self) -> Result<(), NamesrvError> {
        if self.listen.trim().is_empty() {
            return Err(NamesrvError::Config("listen must not be empty".into()));
        }
        for (name, ms) in [
            ("broker_timeout_ms", self.broker_timeout_ms),
            ("scan_interval_ms", self.scan_interval_ms),
        ] {
            if ms == 0 || ms > MAX_INTERVAL_MS {
                return Err(NamesrvError::Config(format!(
                    "{name} must be 1 ..= {MAX_INTERVAL_MS}, not {ms}"
                )));
            }
        }
        Ok(())
    }

    pub fn broker_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_timeout_ms)
    }

    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        NamesrvConfig::default().validate().unwrap();
    }

    #[test]
    fn missing_keys_take_their_defaults() {
        let config = NamesrvConfig::parse("broker_timeout_ms = 1000").unwrap();
        assert_eq!(config.broker_timeout(), Duration::from_secs(1));
        assert_eq!(config.listen, NamesrvConfig::default().listen);
        assert_eq!(config.scan_interval(), Duration::from_secs(5));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for text in [
            "scan_interval_ms = 0",
            "broker_timeout_ms = 0",
            "broker_timeout_ms = 3600001",
            "listen = \"\"",
        ] {
            let config = NamesrvConfig::parse(text).unwrap();
            assert!(config.validate().is_err(), "{text}");
        }
    }
}
