//! Project automation: `cargo xtask <command>`. Each command is one module.

mod arch;
mod bench;
/// The names the harness and the tests share (tests/common/contract.rs).
#[path = "../../tests/common/contract.rs"]
mod contract;
mod dist;
mod docker;
mod figure;
mod size;
mod test;
#[allow(dead_code)] // Not every command uses every helper.
mod util;
mod vm;

const USAGE: &str = "usage: cargo xtask <command> [options]

commands:
  test [--target T]   the whole test matrix, or one target's tests
  vm [--arch A]       real kernels under qemu-system (x86_64, aarch64, riscv64)
  size                size report of the static /init helper against C and std
  docker              the container table (docs/containers.md) on a real Docker engine
  dist [--target T]   static, stripped doctor binaries for the three arches
  bench [--quick]     benchmarks against the peers";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result: util::Result = match args.first().map(String::as_str) {
        Some("test") => test::main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("vm") => vm::main(&args[1..]),
        Some("size") => size::main(&args[1..]),
        Some("docker") => docker::main(&args[1..]),
        Some("dist") => dist::main(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e}");
        std::process::exit(1);
    }
}
