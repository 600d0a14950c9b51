//! Real memory cgroups for the tests: find the memory controller's
//! hierarchy (v1 or v2) with std, independently of the crate, mount cgroup2
//! where none is mounted, and make a cgroup with limits that is removed
//! again when dropped.

use std::fs;
use std::path::PathBuf;

use mlock::limits::CgroupVersion;

/// Where to make test cgroups, and which hierarchy that is.
pub struct Hierarchy {
    pub version: CgroupVersion,
    /// The directory the test cgroup goes in.
    pub parent: PathBuf,
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

/// The memory hierarchy, mounting cgroup2 when none is mounted: in a
/// private mount namespace of this (forked, single-threaded) child when
/// `private`, else where it is (the VMs' throwaway initramfs).
pub fn hierarchy(private: bool) -> Result<Hierarchy, String> {
    if let Some(found) = find_hierarchy() {
        return Ok(found);
    }
    if private {
        super::private_mount_namespace()?;
    }
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
    super::ensure(rc == 0, || {
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
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(h: &Hierarchy, name: &str) -> Result<TestCgroup, String> {
        if h.version == CgroupVersion::V2 {
            // Let children of the parent have memory limits; harmless if
            // already enabled.
            let _ = fs::write(h.parent.join("cgroup.subtree_control"), "+memory");
        }
        let dir = h
            .parent
            .join(format!("mlock-test-{name}-{}", std::process::id()));
        fs::create_dir(&dir)
            .map_err(|e| format!("creating the cgroup {} needs root: {e}", dir.display()))?;
        Ok(TestCgroup(dir))
    }

    pub fn write(&self, file: &str, value: &str) -> Result<(), String> {
        fs::write(self.0.join(file), value)
            .map_err(|e| format!("writing {value} to {}: {e}", self.0.join(file).display()))
    }

    /// Runs `scenario` in a forked child that has moved into the cgroup.
    pub fn run(&self, scenario: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let procs = self.0.join("cgroup.procs");
        super::in_child(move || {
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

/// The name the v1 or v2 hard-limit file has.
pub fn max_file(h: &Hierarchy) -> &'static str {
    match h.version {
        CgroupVersion::V1 => "memory.limit_in_bytes",
        CgroupVersion::V2 => "memory.max",
    }
}
