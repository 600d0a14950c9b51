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
//! requirement = "required"     # or "best_effort", as `Requirement`
//! retry_without_onfault = true
//! ```
//!
//! duende's mlock guide writes the requirement as a bool,
//! `lock_memory_required = true`; that key is read too (and never
//! written), and giving both keys with different answers is an error.
//!
//! Flags that [`Flags::is_valid`] rejects (empty, `ONFAULT` alone) fail
//! deserialization, so a bad file is caught when it is read.
//!
//! [`Hardening`] (the recipe of
//! [`harden_swap_daemon`](crate::daemon::harden_swap_daemon)) and
//! [`Requirement`] serialize too; see `HardeningRepr` below for the keys.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::daemon::{Hardening, Stage, OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN};
use crate::{Config, Flags, Requirement};

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
    /// Always written; `None` when the table leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    requirement: Option<Requirement>,
    retry_without_onfault: bool,
    /// duende's mlock guide's key: `true` is `Required`, `false`
    /// `BestEffort`. Read, never written.
    #[serde(skip_serializing)]
    lock_memory_required: Option<bool>,
}

impl Default for ConfigRepr {
    fn default() -> ConfigRepr {
        let config = Config::SWAP_DAEMON;
        ConfigRepr {
            flags: config.flags(),
            requirement: None,
            retry_without_onfault: config.retries_without_onfault(),
            lock_memory_required: None,
        }
    }
}

impl From<&Config> for ConfigRepr {
    fn from(config: &Config) -> ConfigRepr {
        ConfigRepr {
            flags: config.flags(),
            requirement: Some(config.requirement()),
            retry_without_onfault: config.retries_without_onfault(),
            lock_memory_required: None,
        }
    }
}

impl TryFrom<ConfigRepr> for Config {
    /// What is wrong with the table, for the deserializer's error.
    type Error = &'static str;

    fn try_from(repr: ConfigRepr) -> Result<Config, &'static str> {
        if !repr.flags.is_valid() {
            return Err(
                "invalid `flags`: name CURRENT or FUTURE (or both), optionally with ONFAULT",
            );
        }
        let duende = repr.lock_memory_required.map(|required| match required {
            true => Requirement::Required,
            false => Requirement::BestEffort,
        });
        let requirement = match (repr.requirement, duende) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                return Err("`requirement` and `lock_memory_required` disagree: give one of them")
            }
            (Some(given), _) | (None, Some(given)) => given,
            (None, None) => Config::SWAP_DAEMON.requirement(),
        };
        Ok(Config::new(repr.flags)
            .with_requirement(requirement)
            .with_onfault_retry(repr.retry_without_onfault))
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
        Config::try_from(repr).map_err(serde::de::Error::custom)
    }
}

/// How a recipe step is written: left out, or run best-effort or required.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StepRepr {
    Skip,
    BestEffort,
    Required,
}

impl From<Option<Requirement>> for StepRepr {
    fn from(step: Option<Requirement>) -> StepRepr {
        match step {
            None => StepRepr::Skip,
            Some(Requirement::BestEffort) => StepRepr::BestEffort,
            Some(Requirement::Required) => StepRepr::Required,
        }
    }
}

impl From<StepRepr> for Option<Requirement> {
    fn from(step: StepRepr) -> Option<Requirement> {
        match step {
            StepRepr::Skip => None,
            StepRepr::BestEffort => Some(Requirement::BestEffort),
            StepRepr::Required => Some(Requirement::Required),
        }
    }
}

/// The serialized shape of a [`Hardening`]: every key optional (a missing
/// key keeps the value of [`Hardening::SWAP_DAEMON`]), the lock policy as a
/// nested [`Config`] table, whose `required` is the lock step's
/// requirement. Each other step is `"skip"`, `"best_effort"` or
/// `"required"`.
///
/// ```toml
/// memlock_limit = "best_effort"
/// stack_prefault = 262144          # bytes; 0 skips the step
/// io_flusher = "best_effort"
/// oom_score_adj = -1000            # the value, for the step below
/// oom_score_adj_step = "best_effort"
/// realtime = 10                    # SCHED_FIFO priority, 1..=99
/// realtime_step = "best_effort"
///
/// [lock]
/// flags = "CURRENT | FUTURE"
/// requirement = "required"
/// ```
#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HardeningRepr {
    memlock_limit: StepRepr,
    lock: Config,
    stack_prefault: usize,
    io_flusher: StepRepr,
    oom_score_adj: i32,
    oom_score_adj_step: StepRepr,
    realtime: u8,
    realtime_step: StepRepr,
}

impl Default for HardeningRepr {
    fn default() -> HardeningRepr {
        HardeningRepr::from(&Hardening::SWAP_DAEMON)
    }
}

impl From<&Hardening> for HardeningRepr {
    fn from(h: &Hardening) -> HardeningRepr {
        HardeningRepr {
            memlock_limit: h.requirement(Stage::MemlockLimit).into(),
            lock: h.lock_config(),
            stack_prefault: h.stack_prefault_bytes(),
            io_flusher: h.requirement(Stage::IoFlusher).into(),
            oom_score_adj: h.oom_score_adj_value(),
            oom_score_adj_step: h.requirement(Stage::OomScoreAdj).into(),
            realtime: h.realtime_priority(),
            realtime_step: h.requirement(Stage::Realtime).into(),
        }
    }
}

impl Serialize for Hardening {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HardeningRepr::from(self).serialize(serializer)
    }
}

/// `hardening` with `stage` set as `step` says, through `set` when it runs.
fn apply(
    hardening: Hardening,
    stage: Stage,
    step: StepRepr,
    set: impl FnOnce(Hardening, Requirement) -> Hardening,
) -> Hardening {
    match Option::<Requirement>::from(step) {
        None => hardening.without(stage),
        Some(requirement) => set(hardening, requirement),
    }
}

impl<'de> Deserialize<'de> for Hardening {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Hardening, D::Error> {
        let r = HardeningRepr::deserialize(deserializer)?;
        if r.oom_score_adj_step != StepRepr::Skip
            && !(OOM_SCORE_ADJ_MIN..=OOM_SCORE_ADJ_MAX).contains(&r.oom_score_adj)
        {
            return Err(serde::de::Error::custom(
                "invalid `oom_score_adj`: it must be within -1000..=1000",
            ));
        }
        if r.realtime_step != StepRepr::Skip && !(1..=99).contains(&r.realtime) {
            return Err(serde::de::Error::custom(
                "invalid `realtime`: the SCHED_FIFO priority must be within 1..=99",
            ));
        }
        let h = Hardening::new(r.lock).with_stack_prefault(r.stack_prefault);
        let h = apply(h, Stage::MemlockLimit, r.memlock_limit, |h, req| {
            h.with_memlock_limit(req)
        });
        let h = apply(h, Stage::IoFlusher, r.io_flusher, |h, req| {
            h.with_io_flusher(req)
        });
        let h = apply(h, Stage::OomScoreAdj, r.oom_score_adj_step, |h, req| {
            h.with_oom_score_adj(r.oom_score_adj, req)
        });
        let h = apply(h, Stage::Realtime, r.realtime_step, |h, req| {
            h.with_realtime(r.realtime, req)
        });
        Ok(h)
    }
}
