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
//!
//! [`Hardening`] (the recipe of
//! [`harden_swap_daemon`](crate::harden_swap_daemon)) and [`Requirement`]
//! serialize too; see `HardeningRepr` below for the keys.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Config, Error, Flags, Hardening, Requirement, OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN};

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
    /// duende's mlock guide's key (`lock_memory_required`) maps onto `required`.
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

/// The serialized shape of a [`Hardening`]: every key optional (a missing
/// key keeps the value of [`Hardening::SWAP_DAEMON`]), the lock policy as a
/// nested [`Config`] table.
///
/// ```toml
/// raise_memlock_limit = true
/// prefault_stack = 262144          # bytes; 0 skips the step
/// io_flusher = "best_effort"       # "skip", "best_effort" or "required"
/// oom_score_adj = -1000            # with the requirement below
/// oom_score_adj_requirement = "best_effort"
/// realtime = 10                    # SCHED_FIFO priority, 1..=99
/// realtime_requirement = "best_effort"
///
/// [lock]
/// flags = "CURRENT | FUTURE"
/// required = true
/// ```
#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HardeningRepr {
    lock: Config,
    raise_memlock_limit: bool,
    prefault_stack: usize,
    io_flusher: Requirement,
    oom_score_adj: i32,
    oom_score_adj_requirement: Requirement,
    realtime: u8,
    realtime_requirement: Requirement,
}

impl Default for HardeningRepr {
    fn default() -> HardeningRepr {
        HardeningRepr::from(&Hardening::SWAP_DAEMON)
    }
}

impl From<&Hardening> for HardeningRepr {
    fn from(h: &Hardening) -> HardeningRepr {
        let (oom_score_adj, oom_score_adj_requirement) = h.oom_score_adj_setting();
        let (realtime, realtime_requirement) = h.realtime_setting();
        HardeningRepr {
            lock: h.lock_config(),
            raise_memlock_limit: h.raises_memlock_limit(),
            prefault_stack: h.stack_bytes(),
            io_flusher: h.io_flusher_requirement(),
            oom_score_adj,
            oom_score_adj_requirement,
            realtime,
            realtime_requirement,
        }
    }
}

impl Serialize for Hardening {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HardeningRepr::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Hardening {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Hardening, D::Error> {
        let r = HardeningRepr::deserialize(deserializer)?;
        if r.oom_score_adj_requirement != Requirement::Skip
            && !(OOM_SCORE_ADJ_MIN..=OOM_SCORE_ADJ_MAX).contains(&r.oom_score_adj)
        {
            return Err(serde::de::Error::custom(
                "invalid `oom_score_adj`: it must be within -1000..=1000",
            ));
        }
        if r.realtime_requirement != Requirement::Skip && !(1..=99).contains(&r.realtime) {
            return Err(serde::de::Error::custom(
                "invalid `realtime`: the SCHED_FIFO priority must be within 1..=99",
            ));
        }
        Ok(Hardening::new(r.lock)
            .raise_memlock_limit(r.raise_memlock_limit)
            .prefault_stack(r.prefault_stack)
            .io_flusher(r.io_flusher)
            .oom_score_adj(r.oom_score_adj, r.oom_score_adj_requirement)
            .realtime(r.realtime, r.realtime_requirement))
    }
}
