//! The memory limits of this process's cgroup (`cgroups(7)`), read without
//! allocating: `/proc/self/cgroup` names the cgroup, `/proc/self/mountinfo`
//! says where its hierarchy is mounted, and the controller's files give
//! the limits.

use core::ffi::CStr;

use crate::procfs;
use crate::sys::{self, OpenMode};
use crate::Error;

/// Which cgroup hierarchy holds the memory controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// cgroup v1: a `cgroup` mount with the `memory` controller
    /// (`memory.limit_in_bytes`).
    V1,
    /// cgroup v2, the unified hierarchy (`memory.max`, `memory.high`,
    /// `memory.swap.max`).
    V2,
}

/// The memory limits that apply to this process's cgroup, from
/// [`cgroup_memory`].
///
/// Memory locked with `mlock(2)`/`mlockall(2)` is charged to the cgroup
/// like any other and cannot be reclaimed: a cgroup whose limit is close
/// to what its processes lock has nothing left to reclaim, and the kernel's
/// OOM killer ends one of them instead of swapping. Each limit is the
/// lowest one on the path from the process's cgroup up to the top of the
/// hierarchy that this process can see (limits are hierarchical). `None`
/// means no limit (`max` in v2; in v1 the kernel's "unlimited", any value
/// of 2<sup>62</sup> or more), or a file this kernel does not have.
///
/// # References
/// - [`cgroups(7)`](https://man7.org/linux/man-pages/man7/cgroups.7.html)
/// - the kernel's `Documentation/admin-guide/cgroup-v2.rst` (memory) and
///   `Documentation/admin-guide/cgroup-v1/memory.rst`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CgroupMemory {
    version: CgroupVersion,
    max: Option<u64>,
    high: Option<u64>,
    swap_max: Option<u64>,
    current: Option<u64>,
}

impl CgroupMemory {
    /// The hierarchy the memory controller is on.
    #[must_use]
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The hard limit: v2 `memory.max`, v1 `memory.limit_in_bytes`. Past
    /// it the cgroup's processes are OOM-killed.
    #[must_use]
    pub fn max_bytes(&self) -> Option<u64> {
        self.max
    }

    /// v2 `memory.high`: past it the cgroup is throttled and reclaimed
    /// hard (locked pages cannot be). Always `None` on v1.
    #[must_use]
    pub fn high_bytes(&self) -> Option<u64> {
        self.high
    }

    /// v2 `memory.swap.max`: how much of the cgroup may be swapped out
    /// (irrelevant to locked pages, which never are). Always `None` on v1.
    #[must_use]
    pub fn swap_max_bytes(&self) -> Option<u64> {
        self.swap_max
    }

    /// What the cgroup uses now: v2 `memory.current`, v1
    /// `memory.usage_in_bytes`, of the process's own cgroup.
    #[must_use]
    pub fn current_bytes(&self) -> Option<u64> {
        self.current
    }

    /// The lower of [`max_bytes`](Self::max_bytes) and
    /// [`high_bytes`](Self::high_bytes): how much the cgroup can hold
    /// before the kernel acts on it. `None` when neither is set.
    #[must_use]
    pub fn limit_bytes(&self) -> Option<u64> {
        match (self.max, self.high) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether locking `bytes` would come near the cgroup's limit: at or
    /// above three quarters of [`limit_bytes`](Self::limit_bytes). What
    /// remains must hold everything else the cgroup charges (page cache,
    /// kernel memory, other processes); `false` without a limit.
    #[must_use]
    pub fn is_near_limit(&self, bytes: u64) -> bool {
        self.limit_bytes()
            .is_some_and(|limit| bytes >= limit - limit / 4)
    }
}

/// Reads the memory limits of this process's cgroup.
///
/// Finds the process's cgroup in `/proc/self/cgroup` (the v1 hierarchy
/// with the `memory` controller, else the v2 one), finds where that
/// hierarchy is mounted in `/proc/self/mountinfo`, and reads the limit
/// files of the cgroup and of each ancestor below the mount's root,
/// keeping the lowest (see [`CgroupMemory`]). Inside a container only the
/// container's part of the hierarchy is mounted, and so visible.
///
/// Returns `Ok(None)` when there is no memory controller to read: none
/// enabled, its hierarchy not mounted in this mount namespace, or the
/// cgroup's path (or the mount point) too long for the crate's 512-byte
/// path buffer. Nothing is allocated: every file is read through a stack
/// buffer.
///
/// ```no_run
/// if let Some(cgroup) = mlock::limits::cgroup_memory()? {
///     println!("{:?} limit {:?} bytes", cgroup.version(), cgroup.limit_bytes());
/// }
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// - [`Error::ProcUnavailable`]: `/proc` is not mounted, or not procfs.
/// - [`Error::Unsupported`] on a target without the raw backend.
/// - Another [`Error`] when a read fails.
///
/// # References
/// - [`cgroups(7)`](https://man7.org/linux/man-pages/man7/cgroups.7.html)
/// - [`proc_pid_cgroup(5)`](https://man7.org/linux/man-pages/man5/proc_pid_cgroup.5.html)
/// - [`proc_pid_mountinfo(5)`](https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html)
pub fn cgroup_memory() -> Result<Option<CgroupMemory>, Error> {
    if !crate::BACKEND_AVAILABLE {
        return Err(Error::Unsupported);
    }
    // The cgroup's path, e.g. `/docker/<id>`.
    let mut path = PathBuf::new();
    let Some(version) = own_cgroup(&mut path)? else {
        return Ok(None);
    };
    // Where its hierarchy is mounted: `<mount point><path below root>`.
    let mut file = PathBuf::new();
    if !mount_point(version, path.as_bytes(), &mut file)? {
        return Ok(None);
    }
    let (max_name, usage_name): (&[u8], &[u8]) = match version {
        CgroupVersion::V1 => (b"memory.limit_in_bytes", b"memory.usage_in_bytes"),
        CgroupVersion::V2 => (b"memory.max", b"memory.current"),
    };
    let mut memory = CgroupMemory {
        version,
        max: None,
        high: None,
        swap_max: None,
        current: read_value(&mut file, usage_name),
    };
    // The cgroup, then each parent up to the mount's root.
    let top = file.mount_len;
    loop {
        memory.max = lowest(memory.max, read_value(&mut file, max_name));
        if version == CgroupVersion::V2 {
            memory.high = lowest(memory.high, read_value(&mut file, b"memory.high"));
            memory.swap_max = lowest(memory.swap_max, read_value(&mut file, b"memory.swap.max"));
        }
        if file.len <= top {
            break;
        }
        file.parent(top);
    }
    Ok(Some(memory))
}

/// The lower of two optional limits, `None` being no limit.
fn lowest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A v1 limit at or above this is the kernel's "unlimited"
/// (`PAGE_COUNTER_MAX` pages, about 2<sup>63</sup> bytes).
const V1_UNLIMITED: u64 = 1 << 62;

/// Reads `<dir>/<name>` as a limit: a number, or `max` (v2), or v1's
/// unlimited; `None` for no limit or a file that cannot be read.
fn read_value(dir: &mut PathBuf, name: &[u8]) -> Option<u64> {
    let saved = dir.len;
    let value = dir.push(name).then(|| {
        let fd = sys::open(dir.as_c_str()?, OpenMode::Read).ok()?;
        let mut buf = [0u8; 32];
        let text = procfs::read_whole(&fd, &mut buf).ok()?;
        procfs::parse_u64(text).filter(|&v| v < V1_UNLIMITED)
    });
    dir.truncate(saved);
    value.flatten()
}

/// Finds the process's memory cgroup in `/proc/self/cgroup`: the line of a
/// v1 hierarchy whose controllers include `memory`, else the v2 line
/// (`0::<path>`). Copies its path into `path`.
fn own_cgroup(path: &mut PathBuf) -> Result<Option<CgroupVersion>, Error> {
    let fd = procfs::open_proc(c"/proc/self/cgroup", OpenMode::Read)?;
    let mut v1 = false;
    let mut v2 = PathBuf::new();
    let mut v2_found = false;
    procfs::for_each_line(&fd, |line| {
        // `hierarchy-ID:controller-list:cgroup-path`
        let mut fields = line.splitn(3, |&b| b == b':');
        let (Some(id), Some(controllers), Some(cgroup)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        if id == b"0" && controllers.is_empty() {
            v2_found = v2.push(cgroup);
        } else if controllers.split(|&b| b == b',').any(|c| c == b"memory") {
            v1 = path.push(cgroup);
            return true;
        }
        false
    })?;
    if v1 {
        Ok(Some(CgroupVersion::V1))
    } else if v2_found {
        *path = v2;
        Ok(Some(CgroupVersion::V2))
    } else {
        Ok(None)
    }
}

/// Finds the mount of the hierarchy in `/proc/self/mountinfo` and puts
/// `<mount point><cgroup path below the mount's root>/` into `file`.
/// `false` when no such mount holds the cgroup.
fn mount_point(version: CgroupVersion, cgroup: &[u8], file: &mut PathBuf) -> Result<bool, Error> {
    let fd = procfs::open_proc(c"/proc/self/mountinfo", OpenMode::Read)?;
    let mut found = false;
    procfs::for_each_line(&fd, |line| {
        // `id parent major:minor root mount-point options [tags] - fstype source super-options`
        // The optional fields end at a lone `-` field.
        let Some(sep) = line.windows(3).position(|w| w == b" - ") else {
            return false;
        };
        let (Some(head), Some(tail)) = (line.get(..sep), line.get(sep + 3..)) else {
            return false;
        };
        let mut tail_fields = tail.split(|&b| b == b' ');
        let (Some(fstype), Some(_source), Some(options)) =
            (tail_fields.next(), tail_fields.next(), tail_fields.next())
        else {
            return false;
        };
        let wanted = match version {
            CgroupVersion::V1 => {
                fstype == b"cgroup" && options.split(|&b| b == b',').any(|o| o == b"memory")
            }
            CgroupVersion::V2 => fstype == b"cgroup2",
        };
        if !wanted {
            return false;
        }
        let mut head_fields = head.split(|&b| b == b' ');
        let (Some(root), Some(point)) = (head_fields.nth(3), head_fields.next()) else {
            return false;
        };
        // Paths with escapes (`\040` for a space) are not decoded: skip.
        if root.contains(&b'\\') || point.contains(&b'\\') {
            return false;
        }
        let below = if root == b"/" {
            Some(cgroup)
        } else {
            cgroup
                .strip_prefix(root)
                .filter(|rest| rest.is_empty() || rest.first() == Some(&b'/'))
        };
        let Some(below) = below else { return false };
        file.truncate(0);
        found = file.push(point) && file.mark_mount() && file.push(below);
        found
    })?;
    Ok(found)
}

/// A path assembled in a fixed buffer, always `/`-separated and ready to
/// take one more component, and NUL-terminated for `openat(2)`.
struct PathBuf {
    buf: [u8; 512],
    len: usize,
    /// The length of the mount point: the walk up stops there.
    mount_len: usize,
}

impl PathBuf {
    fn new() -> PathBuf {
        PathBuf {
            buf: [0; 512],
            len: 0,
            mount_len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Appends `/<part>` (one `/` between parts, none doubled); `false`
    /// when it does not fit (leaving room for the NUL).
    fn push(&mut self, part: &[u8]) -> bool {
        let part = trim_slashes(part);
        let needs_slash = self.len == 0 || self.buf.get(self.len - 1) != Some(&b'/');
        let add = usize::from(needs_slash) + part.len();
        if part.is_empty() {
            return true;
        }
        let Some(dest) = self.buf.get_mut(self.len..self.len + add) else {
            return false;
        };
        if self.len + add >= 512 {
            return false;
        }
        let (slash, rest) = dest.split_at_mut(usize::from(needs_slash));
        slash.fill(b'/');
        rest.copy_from_slice(part);
        self.len += add;
        true
    }

    /// Records the current length as the mount point's.
    fn mark_mount(&mut self) -> bool {
        self.mount_len = self.len;
        true
    }

    fn truncate(&mut self, len: usize) {
        self.len = len.min(self.len);
    }

    /// Drops the last component, not going below `floor`.
    fn parent(&mut self, floor: usize) {
        let cut = self
            .as_bytes()
            .iter()
            .rposition(|&b| b == b'/')
            .unwrap_or(0);
        self.len = cut.max(floor);
    }

    /// The path with its NUL; `None` if it contains one already.
    fn as_c_str(&mut self) -> Option<&CStr> {
        *self.buf.get_mut(self.len)? = 0;
        CStr::from_bytes_with_nul(self.buf.get(..=self.len)?).ok()
    }
}

fn trim_slashes(mut part: &[u8]) -> &[u8] {
    while let Some(rest) = part.strip_prefix(b"/") {
        part = rest;
    }
    while let Some(rest) = part.strip_suffix(b"/") {
        part = rest;
    }
    part
}
