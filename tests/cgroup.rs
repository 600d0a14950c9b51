//! `cgroup_memory` and `Preflight::near_cgroup_limit` in a real memory
//! cgroup: each scenario creates one with a limit chosen from the
//! process's own `VmSize`, moves a forked grandchild into it, and checks
//! what the crate reads there against what the test wrote.
//!
//! The memory controller is used where the machine has it: cgroup v1's
//! `memory` hierarchy (the cgroup is made below the process's own), or the
//! v2 hierarchy (below its root). Where neither is mounted (the VMs of
//! `cargo xtask vm` boot a bare initramfs), the scenario mounts cgroup2 in
//! a private mount namespace of its own. Needs root; a machine without a
//! memory controller at all fails the test, saying so.

mod common;

use common::cgroup::*;
use common::*;
use mlock::limits::CgroupVersion;
use mlock::Flags;

/// `VmSize` in bytes, rounded up to a whole number of pages.
fn vm_size() -> u64 {
    status_kb("VmSize") * 1024
}

fn page_round(bytes: u64) -> u64 {
    let page = page_size() as u64;
    bytes.div_ceil(page) * page
}

/// Runs `scenario` in a child that finds (or mounts) the hierarchy; the
/// cgroups it makes are removed when it returns.
#[track_caller]
fn with_hierarchy(scenario: impl FnOnce(&Hierarchy) -> Result<(), String>) {
    run(|| scenario(&hierarchy(true)?))
}

#[test]
fn a_limit_far_above_the_process_is_read_and_not_near() {
    with_hierarchy(|h| {
        let limit = page_round(vm_size() * 8);
        let cgroup = TestCgroup::new(h, "far")?;
        cgroup.write(max_file(h), &limit.to_string())?;
        let version = h.version;
        cgroup.run(move || {
            let memory = mlock::limits::cgroup_memory()
                .map_err(|e| format!("cgroup_memory: {e}"))?
                .ok_or("cgroup_memory found no memory cgroup inside one")?;
            ensure(memory.version() == version, || {
                format!("version {:?}, expected {version:?}", memory.version())
            })?;
            // An ancestor could only lower it; none here sets a lower one.
            ensure(memory.max_bytes() == Some(limit), || {
                format!("max {:?}, wrote {limit}", memory.max_bytes())
            })?;
            ensure(memory.limit_bytes() == Some(limit), || {
                format!("limit {:?}, wrote {limit}", memory.limit_bytes())
            })?;
            ensure(memory.current_bytes().is_some(), || {
                "no usage figure".into()
            })?;
            let p = mlock::limits::preflight(Flags::CURRENT | Flags::FUTURE)
                .map_err(|e| format!("preflight: {e}"))?;
            ensure(
                p.cgroup().and_then(|c| c.max_bytes()) == Some(limit),
                || format!("preflight read {:?}", p.cgroup()),
            )?;
            ensure(!p.near_cgroup_limit(), || {
                format!(
                    "near_cgroup_limit with VmSize {:?} under a limit of {limit}",
                    p.bytes_to_lock()
                )
            })
        })
    });
}

/// A limit past 4 GiB (the whole address space of a 32-bit process) is
/// read whole, as 64-bit bytes, on every target: the byte counts are
/// `u64`, never `usize`.
#[test]
fn a_limit_over_4_gib_is_read_whole() {
    with_hierarchy(|h| {
        // 192 KiB past 6 GiB: whole pages of 4, 16 and 64 KiB (the kernel
        // rounds the limit down to a page).
        let limit: u64 = (6 << 30) + (192 << 10);
        let cgroup = TestCgroup::new(h, "over4g")?;
        cgroup.write(max_file(h), &limit.to_string())?;
        cgroup.run(move || {
            let memory = mlock::limits::cgroup_memory()
                .map_err(|e| format!("cgroup_memory: {e}"))?
                .ok_or("cgroup_memory found no memory cgroup inside one")?;
            ensure(memory.max_bytes() == Some(limit), || {
                format!("max {:?}, wrote {limit}", memory.max_bytes())
            })?;
            let p =
                mlock::limits::preflight(Flags::CURRENT).map_err(|e| format!("preflight: {e}"))?;
            ensure(
                p.cgroup().and_then(|c| c.max_bytes()) == Some(limit),
                || format!("preflight read {:?}", p.cgroup()),
            )
        })
    });
}

#[test]
fn a_limit_at_the_process_size_is_near() {
    with_hierarchy(|h| {
        // Locking CURRENT faults in all of VmSize: a limit of about that
        // size leaves nothing for anything else.
        let limit = page_round(vm_size() + vm_size() / 8);
        let cgroup = TestCgroup::new(h, "near")?;
        cgroup.write(max_file(h), &limit.to_string())?;
        cgroup.run(move || {
            let p = mlock::limits::preflight(Flags::CURRENT | Flags::FUTURE)
                .map_err(|e| format!("preflight: {e}"))?;
            let memory = p.cgroup().ok_or("preflight read no cgroup")?;
            ensure(memory.max_bytes() == Some(limit), || {
                format!("max {:?}, wrote {limit}", memory.max_bytes())
            })?;
            ensure(p.near_cgroup_limit(), || {
                format!(
                    "not near: {:?} bytes to lock under a limit of {limit}",
                    p.bytes_to_lock()
                )
            })?;
            // A warning, never a predicted failure: root has CAP_IPC_LOCK.
            ensure(p.will_succeed(), || {
                format!("predicted {:?}", p.predicted_error())
            })?;
            // FUTURE alone locks nothing now: VmLck (0) is far from it.
            let future = mlock::limits::preflight(Flags::FUTURE).map_err(|e| e.to_string())?;
            ensure(!future.near_cgroup_limit(), || {
                format!("FUTURE alone near, {:?} to lock", future.bytes_to_lock())
            })
        })
    });
}

#[test]
fn v2_memory_high_counts_as_the_limit() {
    with_hierarchy(|h| {
        if h.version == CgroupVersion::V1 {
            // v1 has no memory.high; check instead that none is reported.
            let cgroup = TestCgroup::new(h, "high")?;
            return cgroup.run(|| {
                let memory = mlock::limits::cgroup_memory()
                    .map_err(|e| e.to_string())?
                    .ok_or("no cgroup")?;
                ensure(
                    memory.high_bytes().is_none() && memory.swap_max_bytes().is_none(),
                    || format!("v1 reported v2 files: {memory:?}"),
                )
            });
        }
        let high = page_round(vm_size());
        let cgroup = TestCgroup::new(h, "high")?;
        cgroup.write("memory.high", &high.to_string())?;
        // memory.swap.max exists only where the kernel accounts swap.
        let swap_max = cgroup.write("memory.swap.max", "0").is_ok().then_some(0);
        cgroup.run(move || {
            let memory = mlock::limits::cgroup_memory()
                .map_err(|e| e.to_string())?
                .ok_or("no cgroup")?;
            ensure(
                memory.high_bytes() == Some(high)
                    && memory.limit_bytes() == Some(high)
                    && memory.swap_max_bytes() == swap_max,
                || {
                    format!(
                        "wrote memory.high {high}, memory.swap.max {swap_max:?}, read {memory:?}"
                    )
                },
            )?;
            let p = mlock::limits::preflight(Flags::CURRENT | Flags::FUTURE)
                .map_err(|e| e.to_string())?;
            ensure(p.near_cgroup_limit(), || {
                format!("not near memory.high {high}: {:?}", p.bytes_to_lock())
            })
        })
    });
}
