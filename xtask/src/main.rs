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
#[allow(dead_code)] // Not every command uses every function here.
mod util;
mod vm;

const USAGE: &str = "usage: cargo xtask <command> [options]

commands:
  test [--target T]   the whole test matrix, or one target's tests
  vm [--arch A] [--scenario S]
                      real kernels under qemu-system (x86_64, aarch64, riscv64);
                      S: suite, swap-pressure, core-dump, pid1, swap-deadlock
  size                size report of the static /init example against C and std
  docker              the container table (docs/containers.md) on a real Docker engine
  dist [--target T]   static, stripped doctor binaries for the seven arches
  bench [--quick]     benchmarks against the peers

`cargo xtask <command> --help` says more.";

fn main() {
    let mut args = lexopt::Parser::from_env();
    if let Err(e) = run(&mut args) {
        eprintln!("xtask: error: {e:#}");
        eprintln!("{}", util::disk_line());
        std::process::exit(1);
    }
}

/// Reads the command and hands the rest of the arguments to its module.
fn run(args: &mut lexopt::Parser) -> util::Result {
    use lexopt::prelude::*;
    match args.next()? {
        Some(Value(command)) => match command.string()?.as_str() {
            "test" => test::main(args),
            "bench" => bench::main(args),
            "vm" => vm::main(args),
            "size" => size::main(args),
            "docker" => docker::main(args),
            "dist" => dist::main(args),
            other => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
        },
        Some(Short('h') | Long("help")) => {
            println!("{USAGE}");
            Ok(())
        }
        Some(arg) => Err(util::unexpected(arg, USAGE)),
        None => Err(anyhow::anyhow!("no command given\n\n{USAGE}")),
    }
}
