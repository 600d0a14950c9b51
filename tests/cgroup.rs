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

use std::fs;
use std::path::PathBuf;

use common::*;
use mlock::{CgroupVersion, Flags};

/// Where to make test cgroups, and which hierarchy that is.
struct Hierarchy {
    version: CgroupVersion,
    /// The directory the test cgroup goes in.
    parent: PathBuf,
}

/// Finds the memory hierarchy with std, independently of the crate: the
/// cgroup from `/proc/self/cgroup`, its mount from `/proc/self/mountinfo`.
fn find_hierarchy() -> Option<Hierarchy> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount_of = |want: &dyn Fn(&str, &str) -> bool| {
        mountinfo.lines().find_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let mut tail = tail.split(' ');
            let (fstype, _, options) = (tail.next()?, tail.next()?, tail.next()?);
            let mut head = head.split(' ').skip(3);
            let (root, point) = (head.next()?, head.next()?);
            want(fstype, options).then(|| (root.to_string(), PathBuf::from(point)))
        })
    };
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            let (root, point) =
                mount_of(&|t, o| t == "cgroup" && o.split(',').any(|o| o == "memory"))?;
            let below = path.strip_prefix(root.as_str()).unwrap_or(path);
            return Some(Hierarchy {
                version: CgroupVersion::V1,
                parent: point.join(below.trim_start_matches('/')),
            });
        }
    }
    let (_, point) = mount_of(&|t, _| t == "cgroup2")?;
    let controllers = fs::read_to_string(point.join("cgroup.controllers")).ok()?;
    controllers
        .split_whitespace()
        .any(|c| c == "memory")
        .then_some(Hierarchy {
            version: CgroupVersion::V2,
            parent: point,
        })
}

/// The memory hierarchy, mounting cgroup2 in this child's own mount
/// namespace when none is mounted.
fn hierarchy() -> Result<Hierarchy, String> {
    if let Some(found) = find_hierarchy() {
        return Ok(found);
    }
    private_mount_namespace()?;
    let point = std::env::temp_dir().join(format!("mlock-cgroup2-{}", std::process::id()));
    fs::create_dir_all(&point).map_err(|e| format!("mkdir {}: {e}", point.display()))?;
    let target = std::ffi::CString::new(point.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated strings; NULL data.
    let rc = unsafe {
        libc::mount(
            c"cgroup2".as_ptr(),
            target.as_ptr(),
            c"cgroup2".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    ensure(rc == 0, || {
        format!(
            "no memory cgroup is mounted, and mounting cgroup2 failed ({}): this test needs a kernel with the memory controller (CONFIG_MEMCG)",
            std::io::Error::last_os_error()
        )
    })?;
    find_hierarchy().ok_or_else(|| {
        "cgroup2 is mounted but offers no memory controller (it is bound to a v1 hierarchy, or CONFIG_MEMCG is off)".into()
    })
}

/// A test cgroup, removed on drop (after its only process has exited).
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(h: &Hierarchy, name: &str) -> Result<TestCgroup, String> {
        if h.version == CgroupVersion::V2 {
            // Let children of the parent have memory limits; harmless if
            // already enabled.
            let _ = fs::write(h.parent.join("cgroup.subtree_control"), "+memory");
        }
        let dir = h.parent.join(format!("mlock-test-{name}-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| {
            format!(
                "creating the cgroup {} needs root: {e}",
                dir.display()
            )
        })?;
        Ok(TestCgroup(dir))
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        fs::write(self.0.join(file), value)
            .map_err(|e| format!("writing {value} to {}: {e}", self.0.join(file).display()))
    }

    /// Runs `scenario` in a forked child that has moved into the cgroup.
    fn run(&self, scenario: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let procs = self.0.join("cgroup.procs");
        in_child(move || {
            fs::write(&procs, std::process::id().to_string())
                .map_err(|e| format!("moving into {}: {e}", procs.display()))?;
            scenario()
        })
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// `VmSize` in bytes, rounded up to a whole number of pages.
fn vm_size() -> u64 {
    status_kb("VmSize") * 1024
}

fn page_round(bytes: u64) -> u64 {
    let page = page_size() as u64;
    bytes.div_ceil(page) * page
}

/// The name the v1 or v2 limit file has.
fn max_file(h: &Hierarchy) -> &'static str {
    match h.version {
        CgroupVersion::V1 => "memory.limit_in_bytes",
        CgroupVersion::V2 => "memory.max",
    }
}

/// Runs `scenario` in a child that finds (or mounts) the hierarchy; the
/// cgroups it makes are removed when it returns.
fn with_hierarchy(scenario: impl FnOnce(&Hierarchy) -> Result<(), String>) {
    if let Err(message) = in_child(|| {
        let h = hierarchy()?;
        scenario(&h)
    }) {
        panic!("{message}");
    }
}

#[test]
fn a_limit_far_above_the_process_is_read_and_not_near() {
    with_hierarchy(|h| {
        let limit = page_round(vm_size() * 8);
        let cgroup = TestCgroup::new(h, "far")?;
        cgroup.write(max_file(h), &limit.to_string())?;
        let version = h.version;
        cgroup.run(move || {
            let memory = mlock::cgroup_memory()
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
            let p = mlock::preflight(Flags::CURRENT | Flags::FUTURE)
                .map_err(|e| format!("preflight: {e}"))?;
            ensure(p.cgroup().and_then(|c| c.max_bytes()) == Some(limit), || {
                format!("preflight read {:?}", p.cgroup())
            })?;
            ensure(!p.near_cgroup_limit(), || {
                format!(
                    "near_cgroup_limit with VmSize {:?} under a limit of {limit}",
                    p.bytes_to_lock()
                )
            })
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
            let p = mlock::preflight(Flags::CURRENT | Flags::FUTURE)
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
            let future = mlock::preflight(Flags::FUTURE).map_err(|e| e.to_string())?;
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
                let memory = mlock::cgroup_memory()
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
        let _ = cgroup.write("memory.swap.max", "0");
        cgroup.run(move || {
            let memory = mlock::cgroup_memory()
                .map_err(|e| e.to_string())?
                .ok_or("no cgroup")?;
            ensure(
                memory.high_bytes() == Some(high) && memory.limit_bytes() == Some(high),
                || format!("wrote memory.high {high}, read {memory:?}"),
            )?;
            let p = mlock::preflight(Flags::CURRENT | Flags::FUTURE).map_err(|e| e.to_string())?;
            ensure(p.near_cgroup_limit(), || {
                format!("not near memory.high {high}: {:?}", p.bytes_to_lock())
            })
        })
    });
}
