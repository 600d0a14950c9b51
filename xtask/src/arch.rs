//! The seven Linux architectures and everything the xtask needs to build,
//! run and boot for each: one table that `test`, `size`, `dist`, `docker`
//! and `vm` all read.
//!
//! Each arch has one static target (musl where rust-std ships it, glibc
//! with `+crt-static` where it does not: riscv64, armv7, s390x and
//! powerpc64le), the
//! linker and rustflags cargo needs for it on this x86_64 Debian machine,
//! the QEMU user-mode emulator that runs its binaries, Debian's name for
//! it, and how `qemu-system` boots it.

/// The rustflags of a static glibc build's `static_init` through GNU ld
/// (the gcc-linked arches: riscv64, armv7, s390x, powerpc64le), for the
/// Debian cross toolchain of GNU triple `$gnu`, a macro so that `concat!`
/// can extend it:
/// - `-nostartfiles` and glibc's `crt1.o` alone: `static_init` defines
///   `__libc_start_main`, which runs no constructors, so gcc's other start
///   files (`crti.o`/`crtn.o`'s `_init` and `_fini`, `crtbeginT.o` and
///   `crtend.o`'s `frame_dummy` and transactional-memory clone tables)
///   would be dead code: 0.2 to 0.9 KiB;
/// - GNU ld adds a build-ID note unless told not to;
/// - `gnu-ld-discard.ld`, a linker-script fragment beside the size
///   baselines, discards the unwind tables (nothing unwinds with
///   `panic = "abort"`), the compilers' `.comment` and crt1.o's
///   `.note.ABI-tag` (read by the dynamic loader only).
macro_rules! gnu_ld_size_rustflags {
    ($gnu:literal) => {
        concat!(
            "-C relocation-model=static -C link-arg=-Wl,-z,norelro -C link-arg=-Wl,--build-id=none \
             -C link-arg=-Wl,--no-eh-frame-hdr -C link-arg=-nostartfiles -C link-arg=/usr/",
            $gnu,
            "/lib/crt1.o -C link-arg=-Wl,-T,",
            env!("CARGO_MANIFEST_DIR"),
            "/size/gnu-ld-discard.ld"
        )
    };
}

/// The io-uring crate (a dev-dependency: the ublk example and one daemon
/// test) ships bindings generated on x86_64 and refuses other arches than
/// the four it lists unless told to build anyway. io_uring's structures
/// are the same on every arch by design (fixed-width fields, naturally
/// aligned), and the bindings assert their sizes and offsets at compile
/// time, so a mismatch would fail the build, not the run. A macro, so that
/// `concat!` can add it to other flags.
macro_rules! io_uring_any_arch {
    () => {
        "--cfg=io_uring_skip_arch_check"
    };
}

/// One architecture.
pub struct Arch {
    /// The name used on the command line and in summary lines.
    pub name: &'static str,
    /// The Rust target of its static binaries.
    pub triple: &'static str,
    /// The linker cargo uses for [`Arch::triple`].
    pub linker: &'static str,
    /// Rustflags every build for [`Arch::triple`] needs (empty for none).
    pub rustflags: &'static str,
    /// Rustflags added for the size-optimised `static_init` build (see
    /// [`crate::size`]): a non-PIE static executable has no run-time
    /// relocations, so it needs neither the relocation tables of a static
    /// PIE nor a RELRO segment (which would only write-protect
    /// `.init_array`/`.fini_array` after start-up; the program takes no
    /// input). Both cost a few hundred bytes each on x86_64. GNU ld
    /// (riscv64) also adds a build-ID note (112 bytes with its headers)
    /// that rust-lld does not; nothing reads it. On aarch64, atomic
    /// read-modify-writes (the crate's lock table has a compare-and-swap)
    /// are inlined as load/store-exclusive loops, which every ARMv8.0 core
    /// runs, instead of calls to compiler-rt's outline-atomics functions, which pick
    /// LSE at run time through a CPU-feature probe: about 1.3 KiB. (rustc
    /// warns that the `outline-atomics` feature is not stable.) No
    /// `.eh_frame_hdr`, and with rust-lld no `.eh_frame` either (with
    /// `no-eh-frame.ld`, a linker-script fragment beside the size
    /// baselines): the binary is
    /// built with `panic = "abort"`, so nothing unwinds, and the unwind
    /// tables cost 550 to 850 bytes. A debugger then unwinds a core of it
    /// by frame analysis alone; for a debuggable build, build it without
    /// these flags.
    pub size_rustflags: &'static str,
    /// The QEMU user-mode emulator that runs its binaries on this x86_64
    /// host; `None` for the arches the host's kernel runs itself (x86_64,
    /// and i686 through its 32-bit compat ABI).
    pub qemu_user: Option<&'static str>,
    /// Arguments before the program in cargo's test runner (the emulator's
    /// `-L` prefix for the target's C library).
    pub qemu_user_args: &'static [&'static str],
    /// Debian packages a build for [`Arch::triple`] needs (the linker and
    /// its C library), besides QEMU.
    pub build_packages: &'static [&'static str],
    /// Debian's name for it.
    pub debian: &'static str,
    /// Its pointer width in bits: 32 for i686 and armv7, whose emulated
    /// runs cannot see their own mappings (see
    /// `tests/common/contract.rs`).
    pub pointer_width: u32,
    /// Whether its kernels have `memfd_secret(2)` (`CONFIG_SECRETMEM`,
    /// which needs an arch that can take pages out of its direct map:
    /// not 32-bit arm or powerpc). Without it, `cargo xtask vm` runs the
    /// suite expecting the anonymous fallback, and no secrets boot.
    pub secretmem: bool,
    /// The page size of the kernel `cargo xtask vm` boots, which each
    /// boot checks against `AT_PAGESZ`.
    pub page_size: usize,
    /// The flavour of Debian's kernel that `cargo xtask vm` boots: the
    /// metapackage is `linux-image-<flavour>` (`arm64-16k` for 16 KiB
    /// pages).
    pub kernel_flavour: &'static str,
    /// The Debian kernels `cargo xtask vm` boots, one per kernel
    /// generation: each is a list of suites in order of preference, of
    /// which the first whose signed index apt can verify is used. The
    /// first suite names the kernel on the command line (`--suite`).
    pub kernels: &'static [&'static [&'static str]],
    /// The `qemu-system` emulator of its VMs.
    pub qemu_system: &'static str,
    /// Whether that emulator is bookworm-backports' (QEMU 10.0, unpacked
    /// under `target/vm/qemu/`) rather than the machine's own (Debian 12's
    /// QEMU 7.2). s390x's is: QEMU 7.2's s390x TCG fails an assertion of
    /// its own (`cc_calc_addu: assertion failed: (carry_out <= 1)`) and
    /// exits in about one suite boot in two, on the same kernel and
    /// initramfs that QEMU 10.0 boots every time.
    pub qemu_backported: bool,
    /// Its machine and CPU arguments.
    pub machine: &'static [&'static str],
    /// The kernel's serial console.
    pub console: &'static str,
    /// Kernel arguments every boot of this arch gets.
    pub kernel_args: &'static str,
    /// The arch's vector extension, where the kernel does not preserve the
    /// vector registers across a system call and the crate's syscalls
    /// therefore declare them clobbered (riscv64's V): the builds that
    /// test that case turn it on with these rustflags, and the emulated
    /// CPU gets it with [`Arch::vector_cpu`]. Empty for none.
    pub vector_rustflags: &'static str,
    /// The QEMU `-cpu` value with the vector extension on (user mode and
    /// the VMs); empty for none.
    pub vector_cpu: &'static str,
    /// The swap-deadlock transports `cargo xtask test` boots on it (by
    /// name; where the kernel has the driver), in its `none` and `harden`
    /// modes: all arches but i686, powerpc64le and arm64 with 16 KiB
    /// pages, whose boots would take the VM tier past CI's time, and over
    /// ublk alone on armv7, whose NBD daemon can spend more than the
    /// watchdog's 30 s in direct reclaim for its socket buffers on a busy
    /// host (docs/swap-deadlock.md). `cargo xtask vm --arch A --scenario
    /// swap-deadlock` runs every mode and transport anywhere.
    pub swap_deadlock_tier: &'static [&'static str],
    /// How long one swap-deadlock boot may take before it counts as a
    /// `timeout`: a surviving boot takes 100 to 200 s on an idle 2-core
    /// x86_64 machine under TCG, several times that when other VMs and
    /// builds share it; the emulated arm64 and riscv64 CPUs are slower.
    pub swap_deadlock_timeout: std::time::Duration,
}

/// The Debian package of QEMU user mode.
const QEMU_USER_PACKAGE: &str = "qemu-user";

pub const X86_64: Arch = Arch {
    name: "x86_64",
    triple: "x86_64-unknown-linux-musl",
    // musl's crt and libc ship self-contained in rust-std.
    linker: "rust-lld",
    rustflags: "",
    size_rustflags: concat!(
        "-C relocation-model=static -C link-arg=-znorelro -C link-arg=--no-eh-frame-hdr \
         -C link-arg=-T",
        env!("CARGO_MANIFEST_DIR"),
        "/size/no-eh-frame.ld"
    ),
    qemu_user: None,
    qemu_user_args: &[],
    build_packages: &[],
    debian: "amd64",
    swap_deadlock_tier: &["nbd", "ublk"],
    secretmem: true,
    pointer_width: 64,
    kernel_flavour: "amd64",
    page_size: 4096,
    // Bookworm's 6.1 and trixie's 6.12 (the page allocator's reserves
    // changed between them, in 6.3; only 6.12 has ublk).
    kernels: &[&["bookworm"], &["trixie"]],
    qemu_system: "qemu-system-x86_64",
    qemu_backported: false,
    machine: &["-cpu", "max"],
    console: "ttyS0",
    // The boot-time check that the timer interrupt works can fail when
    // the host is busy and TCG falls behind ("IO-APIC + timer doesn't
    // work!", a panic); QEMU's timer works.
    kernel_args: "no_timer_check",
    vector_rustflags: "",
    vector_cpu: "",
    swap_deadlock_timeout: std::time::Duration::from_secs(600),
};

pub const AARCH64: Arch = Arch {
    name: "aarch64",
    triple: "aarch64-unknown-linux-musl",
    linker: "rust-lld",
    rustflags: "",
    size_rustflags: concat!(
        "-C relocation-model=static -C link-arg=-znorelro -C link-arg=--no-eh-frame-hdr \
         -C target-feature=-outline-atomics -C link-arg=-T",
        env!("CARGO_MANIFEST_DIR"),
        "/size/no-eh-frame.ld"
    ),
    qemu_user: Some("qemu-aarch64"),
    qemu_user_args: &[],
    build_packages: &[],
    debian: "arm64",
    swap_deadlock_tier: &["nbd", "ublk"],
    secretmem: true,
    pointer_width: 64,
    kernel_flavour: "arm64",
    page_size: 4096,
    kernels: &[&["bookworm"], &["trixie"]],
    qemu_system: "qemu-system-aarch64",
    qemu_backported: false,
    // Pointer authentication with QEMU's own cheap algorithm: the
    // architected one dominates TCG time.
    machine: &["-M", "virt", "-cpu", "max,pauth-impdef=on"],
    console: "ttyAMA0",
    kernel_args: "",
    vector_rustflags: "",
    vector_cpu: "",
    swap_deadlock_timeout: std::time::Duration::from_secs(1200),
};

/// The riscv64 CPU of the VMs and of the vector tests: QEMU's `rv64` with
/// V (RVV 1.0) at 128-bit vectors.
const RISCV64_CPU: &str = "rv64,v=true,vlen=128";

pub const RISCV64: Arch = Arch {
    name: "riscv64",
    // rust-std has no riscv64 musl: glibc, linked statically.
    triple: "riscv64gc-unknown-linux-gnu",
    linker: "riscv64-linux-gnu-gcc",
    rustflags: "-C target-feature=+crt-static",
    size_rustflags: gnu_ld_size_rustflags!("riscv64-linux-gnu"),
    qemu_user: Some("qemu-riscv64"),
    qemu_user_args: &["-L", "/usr/riscv64-linux-gnu"],
    build_packages: &["gcc-riscv64-linux-gnu", "libc6-dev-riscv64-cross"],
    debian: "riscv64",
    swap_deadlock_tier: &["nbd", "ublk"],
    secretmem: true,
    pointer_width: 64,
    kernel_flavour: "riscv64",
    page_size: 4096,
    // Bookworm has no riscv64. Trixie's 6.12, and forky's (Debian
    // testing: 7.2 in December 2026) as the newer generation; sid's
    // when the mirror serves forky's index inconsistently.
    kernels: &[&["trixie"], &["forky", "sid"]],
    qemu_system: "qemu-system-riscv64",
    qemu_backported: false,
    // With V (RVV 1.0, 128-bit): the VM's suite is built with it, so the
    // syscalls' vector clobbers meet a kernel that discards vector state.
    machine: &["-M", "virt", "-cpu", RISCV64_CPU, "-bios", "default"],
    console: "ttyS0",
    kernel_args: "",
    vector_rustflags: "-C target-feature=+v",
    vector_cpu: RISCV64_CPU,
    swap_deadlock_timeout: std::time::Duration::from_secs(1200),
};

/// 32-bit x86 (i686): musl, self-contained in rust-std like x86_64's.
pub const I686: Arch = Arch {
    name: "i686",
    triple: "i686-unknown-linux-musl",
    linker: "rust-lld",
    rustflags: io_uring_any_arch!(),
    size_rustflags: X86_64.size_rustflags,
    // The x86_64 host kernel runs i686 binaries itself, through its
    // 32-bit system-call ABI (`int 0x80`, `IA32_EMULATION`): the real
    // kernel, not an emulator, answers them.
    qemu_user: None,
    qemu_user_args: &[],
    build_packages: &[],
    debian: "i386",
    swap_deadlock_tier: &[],
    secretmem: true,
    pointer_width: 32,
    kernel_flavour: "686",
    page_size: 4096,
    // Trixie has no i386 kernel: bookworm's 6.1 only.
    kernels: &[&["bookworm"]],
    qemu_system: "qemu-system-i386",
    qemu_backported: false,
    // QEMU's default PC and CPU: the 686 kernel is built without PAE.
    machine: &[],
    console: "ttyS0",
    kernel_args: "no_timer_check",
    vector_rustflags: "",
    vector_cpu: "",
    swap_deadlock_timeout: std::time::Duration::from_secs(600),
};

/// 32-bit arm (ARMv7, hard float). rust-std's musl target for it cannot be
/// downloaded here (rustup fails on `armv7-unknown-linux-musleabihf`):
/// glibc, linked statically, as for riscv64.
pub const ARMV7: Arch = Arch {
    name: "armv7",
    triple: "armv7-unknown-linux-gnueabihf",
    linker: "arm-linux-gnueabihf-gcc",
    rustflags: concat!("-C target-feature=+crt-static ", io_uring_any_arch!()),
    size_rustflags: gnu_ld_size_rustflags!("arm-linux-gnueabihf"),
    qemu_user: Some("qemu-arm"),
    qemu_user_args: &["-L", "/usr/arm-linux-gnueabihf"],
    build_packages: &["gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"],
    debian: "armhf",
    swap_deadlock_tier: &["ublk"],
    secretmem: false,
    pointer_width: 32,
    kernel_flavour: "armmp",
    page_size: 4096,
    // One kernel generation for each of the four later arches (bookworm's
    // 6.1 is served for armhf and s390x too): each TCG boot costs minutes
    // of the VM tier, and the generations differ in the memory manager,
    // which x86_64, aarch64 and riscv64 already boot twice.
    kernels: &[&["trixie"]],
    qemu_system: "qemu-system-arm",
    qemu_backported: false,
    // Without `highmem=off` QEMU puts the PCIe window above 4 GiB, which a
    // kernel without LPAE cannot reach (its virtio devices then fail).
    machine: &["-M", "virt,highmem=off", "-cpu", "cortex-a15"],
    console: "ttyAMA0",
    kernel_args: "",
    vector_rustflags: "",
    vector_cpu: "",
    swap_deadlock_timeout: std::time::Duration::from_secs(1200),
};

/// s390x: big-endian, 64-bit. No musl target in rust-std: glibc, linked
/// statically.
pub const S390X: Arch = Arch {
    name: "s390x",
    triple: "s390x-unknown-linux-gnu",
    linker: "s390x-linux-gnu-gcc",
    rustflags: concat!("-C target-feature=+crt-static ", io_uring_any_arch!()),
    size_rustflags: gnu_ld_size_rustflags!("s390x-linux-gnu"),
    qemu_user: Some("qemu-s390x"),
    qemu_user_args: &["-L", "/usr/s390x-linux-gnu"],
    build_packages: &["gcc-s390x-linux-gnu", "libc6-dev-s390x-cross"],
    debian: "s390x",
    swap_deadlock_tier: &["nbd", "ublk"],
    secretmem: true,
    pointer_width: 64,
    kernel_flavour: "s390x",
    page_size: 4096,
    kernels: &[&["trixie"]],
    qemu_system: "qemu-system-s390x",
    qemu_backported: true,
    // QEMU's default CPU: Debian builds the kernel for z10, which TCG
    // emulates.
    machine: &["-M", "s390-ccw-virtio"],
    console: "ttysclp0",
    kernel_args: "",
    vector_rustflags: "",
    vector_cpu: "",
    swap_deadlock_timeout: std::time::Duration::from_secs(1200),
};

/// 64-bit little-endian POWER. rust-std's musl target for it cannot be
/// downloaded here: glibc, linked statically.
pub const POWERPC64LE: Arch = Arch {
    name: "powerpc64le",
    triple: "powerpc64le-unknown-linux-gnu",
    linker: "powerpc64le-linux-gnu-gcc",
    rustflags: "-C target-feature=+crt-static",
    // `gnu_ld_size_rustflags!`, and the common page size set to the
    // maximum (64 KiB): otherwise GNU ld lays the writable segment out
    // to save a page of memory and pads the file for it (about 800 bytes).
    size_rustflags: concat!(
        gnu_ld_size_rustflags!("powerpc64le-linux-gnu"),
        " -C link-arg=-Wl,-z,common-page-size=65536"
    ),
    qemu_user: Some("qemu-ppc64le"),
    qemu_user_args: &["-L", "/usr/powerpc64le-linux-gnu"],
    build_packages: &["gcc-powerpc64le-linux-gnu", "libc6-dev-ppc64el-cross"],
    debian: "ppc64el",
    swap_deadlock_tier: &[],
    secretmem: false,
    pointer_width: 64,
    kernel_flavour: "powerpc64le",
    page_size: 4096,
    kernels: &[&["trixie"]],
    qemu_system: "qemu-system-ppc64",
    qemu_backported: false,
    // POWER9 (QEMU's default), radix MMU; the `cap-*` settings turn off
    // the speculation mitigations TCG cannot offer (otherwise a warning
    // each per boot). The kernel image is the ELF `vmlinux`.
    machine: &[
        "-M",
        "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off",
    ],
    console: "hvc0",
    kernel_args: "",
    vector_rustflags: "",
    vector_cpu: "",
    swap_deadlock_timeout: std::time::Duration::from_secs(1200),
};

/// powerpc64le with 64 KiB pages: the same binaries as [`POWERPC64LE`],
/// booted in trixie's `linux-image-powerpc64le-64k` by `cargo xtask vm`
/// only.
pub const POWERPC64LE_64K: Arch = Arch {
    name: "powerpc64le-64k",
    kernel_flavour: "powerpc64le-64k",
    page_size: 64 * 1024,
    ..POWERPC64LE
};

/// Rustflags joined with spaces, the empty ones left out.
fn join_flags(flags: &[&str]) -> String {
    flags
        .iter()
        .filter(|f| !f.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// arm64 with 16 KiB pages: the same static binaries as [`AARCH64`],
/// booted in trixie's `linux-image-arm64-16k` (6.12) by `cargo xtask vm`
/// only (the builds, sizes and containers are [`AARCH64`]'s).
pub const AARCH64_16K: Arch = Arch {
    name: "aarch64-16k",
    kernel_flavour: "arm64-16k",
    page_size: 16 * 1024,
    // Bookworm has no 16k flavour.
    kernels: &[&["trixie"]],
    swap_deadlock_tier: &[],
    ..AARCH64
};

/// The seven architectures the crate supports, in the order every
/// command runs them.
pub const ARCHES: &[Arch] = &[X86_64, AARCH64, RISCV64, I686, ARMV7, S390X, POWERPC64LE];

/// What `cargo xtask vm` boots: [`ARCHES`], and arm64 again with 16 KiB
/// pages and powerpc64le with 64 KiB pages.
pub const VM_ARCHES: &[Arch] = &[
    X86_64,
    AARCH64,
    AARCH64_16K,
    RISCV64,
    I686,
    ARMV7,
    S390X,
    POWERPC64LE,
    POWERPC64LE_64K,
];

/// The arch named `name` on the command line (of `cargo xtask vm`, which
/// also knows [`AARCH64_16K`]).
pub fn by_name(name: &str) -> Option<&'static Arch> {
    VM_ARCHES.iter().find(|a| a.name == name)
}

/// The arch whose static target is `triple`.
pub fn by_triple(triple: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.triple == triple)
}

impl Arch {
    /// The `CARGO_TARGET_<TRIPLE>_<key>` variable of this target.
    fn cargo_var(&self, key: &str) -> String {
        format!(
            "CARGO_TARGET_{}_{key}",
            self.triple.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// Cargo's environment for a build: the linker and, when it has any,
    /// the rustflags.
    pub fn build_env(&self) -> Vec<(String, String)> {
        self.env_with_rustflags(self.rustflags)
    }

    /// Cargo's environment for the size-optimised `static_init`: the
    /// linker, and the rustflags with [`Arch::size_rustflags`] added.
    pub fn size_env(&self) -> Vec<(String, String)> {
        self.env_with_rustflags(&join_flags(&[self.rustflags, self.size_rustflags]))
    }

    /// Cargo's environment for the VMs' static binaries: the build's, with
    /// the vector extension on where the arch has one
    /// ([`Arch::vector_rustflags`]); the VM's CPU has it too.
    pub fn vm_env(&self) -> Vec<(String, String)> {
        self.env_with_rustflags(&join_flags(&[self.rustflags, self.vector_rustflags]))
    }

    /// Cargo's environment for `cargo test` with the vector extension on,
    /// under QEMU user mode with a CPU that has it; `None` for an arch
    /// without one.
    pub fn vector_test_env(&self) -> Option<Vec<(String, String)>> {
        if self.vector_rustflags.is_empty() {
            return None;
        }
        let mut env =
            self.env_with_rustflags(&join_flags(&[self.rustflags, self.vector_rustflags]));
        let runner = std::iter::once(self.qemu_user?)
            .chain(["-cpu", self.vector_cpu])
            .chain(self.qemu_user_args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        env.push((self.cargo_var("RUNNER"), runner));
        Some(env)
    }

    /// Cargo's environment for `cargo test`: the build's, and the QEMU
    /// runner for a foreign arch.
    pub fn test_env(&self) -> Vec<(String, String)> {
        let mut env = self.build_env();
        if let Some(qemu) = self.qemu_user {
            let runner = std::iter::once(qemu)
                .chain(self.qemu_user_args.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            env.push((self.cargo_var("RUNNER"), runner));
        }
        env
    }

    fn env_with_rustflags(&self, rustflags: &str) -> Vec<(String, String)> {
        let mut env = vec![(self.cargo_var("LINKER"), self.linker.to_string())];
        if !rustflags.is_empty() {
            env.push((self.cargo_var("RUSTFLAGS"), rustflags.to_string()));
        }
        env
    }

    /// Debian packages to build for this arch and run its binaries under
    /// QEMU user mode.
    pub fn packages(&self) -> Vec<&'static str> {
        let qemu = self.qemu_user.map(|_| QEMU_USER_PACKAGE);
        qemu.into_iter()
            .chain(self.build_packages.iter().copied())
            .collect()
    }

    /// Programs the build and the runner need on `PATH` once the packages
    /// are installed (rust-lld comes with rustup, not Debian).
    pub fn programs(&self) -> Vec<&'static str> {
        self.qemu_user
            .into_iter()
            .chain(Some(self.linker).filter(|l| *l != "rust-lld"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_arches_are_the_arches_and_a_16k_and_a_64k_kernel() {
        for arch in ARCHES {
            assert!(
                VM_ARCHES.iter().any(|a| a.name == arch.name),
                "{}",
                arch.name
            );
        }
        let k16 = by_name("aarch64-16k").expect("aarch64-16k");
        assert_eq!((k16.triple, k16.page_size), (AARCH64.triple, 16 * 1024));
        assert_eq!(k16.kernel_flavour, "arm64-16k");
        let k64 = by_name("powerpc64le-64k").expect("powerpc64le-64k");
        assert_eq!((k64.triple, k64.page_size), (POWERPC64LE.triple, 64 * 1024));
        assert_eq!(k64.kernel_flavour, "powerpc64le-64k");
        assert!(ARCHES.iter().all(|a| a.page_size == 4096));
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cargo_sees_the_settings_it_always_saw() {
        assert_eq!(
            X86_64.test_env(),
            env(&[("CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld")])
        );
        assert_eq!(
            AARCH64.test_env(),
            env(&[
                ("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld"),
                (
                    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER",
                    "qemu-aarch64"
                ),
            ])
        );
        assert_eq!(
            RISCV64.test_env(),
            env(&[
                (
                    "CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_LINKER",
                    "riscv64-linux-gnu-gcc"
                ),
                (
                    "CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                    "-C target-feature=+crt-static"
                ),
                (
                    "CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_RUNNER",
                    "qemu-riscv64 -L /usr/riscv64-linux-gnu"
                ),
            ])
        );
        assert_eq!(
            RISCV64.size_env()[1].1,
            concat!(
                "-C target-feature=+crt-static -C relocation-model=static \
                 -C link-arg=-Wl,-z,norelro -C link-arg=-Wl,--build-id=none \
                 -C link-arg=-Wl,--no-eh-frame-hdr -C link-arg=-nostartfiles \
                 -C link-arg=/usr/riscv64-linux-gnu/lib/crt1.o -C link-arg=-Wl,-T,",
                env!("CARGO_MANIFEST_DIR"),
                "/size/gnu-ld-discard.ld"
            )
        );
        assert_eq!(
            X86_64.size_env()[1].1,
            concat!(
                "-C relocation-model=static -C link-arg=-znorelro -C link-arg=--no-eh-frame-hdr \
                 -C link-arg=-T",
                env!("CARGO_MANIFEST_DIR"),
                "/size/no-eh-frame.ld"
            )
        );
        assert_eq!(RISCV64.build_env().len(), 2);
        assert_eq!(AARCH64.build_env().len(), 1);
    }

    #[test]
    fn packages_and_programs() {
        assert_eq!(X86_64.packages(), Vec::<&str>::new());
        assert_eq!(AARCH64.packages(), ["qemu-user"]);
        assert_eq!(
            RISCV64.packages(),
            [
                "qemu-user",
                "gcc-riscv64-linux-gnu",
                "libc6-dev-riscv64-cross"
            ]
        );
        assert_eq!(X86_64.programs(), Vec::<&str>::new());
        assert_eq!(
            RISCV64.programs(),
            ["qemu-riscv64", "riscv64-linux-gnu-gcc"]
        );
    }
}
