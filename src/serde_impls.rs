//! `serde` support (feature `serde`): [`Flags`] and [`Config`] serialize
//! and deserialize, so that a daemon can embed them in its own TOML or JSON
//! configuration.
//!
//! [`Flags`] is written as its names, `"CURRENT | FUTURE"`, in
//! human-readable formats (TOML, JSON) and as its bits otherwise, as
//! `bitflags` does; an unknown name is an error. [`Config`] is a table
//! whose every key is optional (a missing key keeps the value of
//! [`Config::SWAP_DAEMON`]):
//!
//! ```toml
//! flags = "CURRENT | FUTURE"
//! required = true              # also accepted as `lock_memory_required`
//! retry_without_onfault = true
//! ```
//!
//! Flags that [`Flags::is_valid`] rejects (empty, `ONFAULT` alone) fail
//! deserialization, so a bad file is caught when it is read.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Config, Error, Flags};

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bitflags::serde::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Flags, D::Error> {
        bitflags::serde::deserialize(deserializer)
    }
}

/// The serialized shape of a [`Config`].
#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigRepr {
    flags: Flags,
    /// The seeds' key (`lock_memory_required`) maps onto `required`.
    #[serde(alias = "lock_memory_required")]
    required: bool,
    retry_without_onfault: bool,
}

impl Default for ConfigRepr {
    fn default() -> ConfigRepr {
        ConfigRepr::from(&Config::SWAP_DAEMON)
    }
}

impl From<&Config> for ConfigRepr {
    fn from(config: &Config) -> ConfigRepr {
        ConfigRepr {
            flags: config.flags(),
            required: config.is_required(),
            retry_without_onfault: config.retries_without_onfault(),
        }
    }
}

impl TryFrom<ConfigRepr> for Config {
    type Error = Error;

    fn try_from(repr: ConfigRepr) -> Result<Config, Error> {
        if !repr.flags.is_valid() {
            return Err(Error::InvalidArgument);
        }
        Ok(Config::new(repr.flags)
            .required(repr.required)
            .retry_without_onfault(repr.retry_without_onfault))
    }
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ConfigRepr::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Config, D::Error> {
        let repr = ConfigRepr::deserialize(deserializer)?;
        Config::try_from(repr).map_err(|_| {
            serde::de::Error::custom(
                "invalid `flags`: name CURRENT or FUTURE (or both), optionally with ONFAULT",
            )
        })
    }
}
