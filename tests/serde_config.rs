//! `Config` and `Flags` through TOML (feature `serde`): duende's keys
//! (`[resources] lock_memory = true`, `lock_memory_required = true`) mapped
//! onto the crate's, and a round trip.
//!
//! Run with `cargo test --features serde`; `cargo xtask test` passes the
//! feature, so these tests never go unrun in CI. Without the feature this
//! file compiles to nothing.
#![cfg(feature = "serde")]

use mlock::{Config, Flags};
use serde::{Deserialize, Serialize};

/// A daemon's own `[resources]` table, as duende's mlock guide writes it: whether to
/// lock at all is the daemon's business, and the crate's `Config` takes the
/// rest of the keys.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Resources {
    lock_memory: bool,
    #[serde(flatten)]
    lock: Config,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct DaemonConfig {
    resources: Resources,
}

const SEED: &str = r#"
[resources]
lock_memory = true
lock_memory_required = true
"#;

#[test]
fn duendes_keys_map_onto_config() {
    let parsed: DaemonConfig = toml::from_str(SEED).expect("the seed's TOML parses");
    assert!(parsed.resources.lock_memory);
    // `lock_memory_required = true` is `requirement = "required"`; the
    // flags default to the swap daemon's CURRENT | FUTURE.
    assert_eq!(
        parsed.resources.lock,
        Config::SWAP_DAEMON.with_requirement(mlock::Requirement::Required),
        "seed keys mapped onto the crate's"
    );
    assert_eq!(
        parsed.resources.lock.flags(),
        Flags::CURRENT | Flags::FUTURE
    );
}

#[test]
fn round_trip_through_toml() {
    let parsed: DaemonConfig = toml::from_str(SEED).unwrap();
    let written = toml::to_string(&parsed).expect("serialize");
    // The crate writes its own key names, and the flags by name.
    assert!(written.contains(r#"requirement = "required""#), "{written}");
    assert!(
        written.contains(r#"flags = "CURRENT | FUTURE""#),
        "{written}"
    );
    assert!(!written.contains("lock_memory_required"), "{written}");
    let again: DaemonConfig = toml::from_str(&written).expect("re-parse");
    assert_eq!(again, parsed);
}

#[test]
fn every_valid_config_round_trips_as_a_table() {
    let flag_sets = [
        Flags::CURRENT,
        Flags::FUTURE,
        Flags::CURRENT | Flags::FUTURE,
        Flags::CURRENT | Flags::ONFAULT,
        Flags::FUTURE | Flags::ONFAULT,
        Flags::all(),
    ];
    for flags in flag_sets {
        for required in [false, true] {
            for retry in [false, true] {
                let requirement = if required {
                    mlock::Requirement::Required
                } else {
                    mlock::Requirement::BestEffort
                };
                let config = Config::new(flags)
                    .with_requirement(requirement)
                    .with_onfault_retry(retry);
                let text = toml::to_string(&config).unwrap();
                let back: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(back, config, "{text}");
            }
        }
    }
}

#[test]
fn missing_keys_take_the_swap_daemon_defaults() {
    let config: Config = toml::from_str("").unwrap();
    assert_eq!(config, Config::SWAP_DAEMON);
    let config: Config = toml::from_str(r#"flags = "CURRENT | ONFAULT""#).unwrap();
    assert_eq!(config, Config::new(Flags::CURRENT | Flags::ONFAULT));
}

#[test]
fn invalid_flags_and_unknown_keys_fail_when_read() {
    for (text, why) in [
        (r#"flags = """#, "empty flags"),
        (r#"flags = "ONFAULT""#, "ONFAULT alone"),
        (r#"flags = "CURRENT | LOCKED""#, "an unknown flag name"),
        ("requierd = true", "a misspelt key"),
        ("required = true", "the key of earlier versions"),
        (r#"requirement = "always""#, "an unknown requirement"),
        ("lock_memory_required = 1", "a number for a bool"),
        (
            "requirement = \"best_effort\"\nlock_memory_required = true",
            "two keys that disagree",
        ),
    ] {
        let result: Result<Config, _> = toml::from_str(text);
        assert!(result.is_err(), "{why} was accepted: {text}");
    }
    let err = toml::from_str::<Config>(r#"flags = "ONFAULT""#).unwrap_err();
    assert!(err.to_string().contains("CURRENT or FUTURE"), "{err}");
    let text = "requirement = \"required\"\nlock_memory_required = false";
    let err = toml::from_str::<Config>(text).unwrap_err();
    assert!(err.to_string().contains("disagree"), "{err}");
    // Both keys, agreeing, are read as one.
    let both: Config =
        toml::from_str("requirement = \"required\"\nlock_memory_required = true").unwrap();
    assert_eq!(both.requirement(), mlock::Requirement::Required);
}

#[test]
fn flags_alone_serialize_by_name() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Wrapper {
        flags: Flags,
    }
    let w = Wrapper {
        flags: Flags::CURRENT | Flags::FUTURE,
    };
    let text = toml::to_string(&w).unwrap();
    assert_eq!(text.trim(), r#"flags = "CURRENT | FUTURE""#);
    assert_eq!(toml::from_str::<Wrapper>(&text).unwrap(), w);
}

#[test]
fn the_whole_recipe_reads_from_toml() {
    let text = r#"
        memlock_limit = "skip"
        stack_prefault = 131072
        io_flusher = "required"
        oom_score_adj = -1000
        oom_score_adj_step = "best_effort"
        realtime = 20
        realtime_step = "best_effort"

        [lock]
        lock_memory_required = true
    "#;
    let recipe: mlock::daemon::Hardening = toml::from_str(text).expect("parse");
    let want = mlock::daemon::Hardening::new(
        Config::SWAP_DAEMON.with_requirement(mlock::Requirement::Required),
    )
    .with_stack_prefault(128 * 1024)
    .with_io_flusher(mlock::Requirement::Required)
    .with_oom_score_adj(-1000, mlock::Requirement::BestEffort)
    .with_realtime(20, mlock::Requirement::BestEffort)
    .without(mlock::daemon::Stage::MemlockLimit);
    assert_eq!(recipe, want);
    let written = toml::to_string(&recipe).unwrap();
    assert_eq!(
        toml::from_str::<mlock::daemon::Hardening>(&written).unwrap(),
        recipe,
        "{written}"
    );
    // Missing keys: the default recipe.
    assert_eq!(
        toml::from_str::<mlock::daemon::Hardening>("").unwrap(),
        mlock::daemon::Hardening::SWAP_DAEMON
    );
    // An out-of-range score is refused when read, unless the step is skipped.
    assert!(toml::from_str::<mlock::daemon::Hardening>(
        "oom_score_adj = -1001\noom_score_adj_step = \"required\""
    )
    .is_err());
    assert!(toml::from_str::<mlock::daemon::Hardening>("oom_score_adj = 5000").is_ok());
    assert!(toml::from_str::<mlock::daemon::Hardening>("io_flusher = \"maybe\"").is_err());
    // The old keys are refused, not ignored.
    assert!(toml::from_str::<mlock::daemon::Hardening>("raise_memlock_limit = true").is_err());
    // So is a real-time priority outside 1..=99.
    assert!(toml::from_str::<mlock::daemon::Hardening>(
        "realtime = 0\nrealtime_step = \"required\""
    )
    .is_err());
}
