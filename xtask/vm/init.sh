#!/bin/busybox sh
# /init of the suite and secrets boots of `cargo xtask vm` (xtask/src/vm/pack.rs
# packs it).
#
# It runs as PID 1 in a real kernel, proves the crate's promises, prints
# one summary line per scenario, and powers off. The host parses the
# console; a line that is missing or says something else fails the run.
#   page-size <arch>: <bytes> (AT_PAGESZ)
#   tests <arch>: N passed, M failed
#   secrets <arch>: default=secretmem|anonymous
#   swap-pressure <arch>: locked VmSwap=<n> kB unlocked VmSwap=<m> kB
#   core-dump <arch>: backing=<b> protected=absent|present control=absent|present
# /etc/vm.conf sets ARCH, KERNEL (the series, e.g. 6.12) and HOLD_MIB.
#
# The kernel command line picks the boot: `secretmem.enable=1` (memfd_secret
# on; the 6.1 kernels need it) runs everything, with the core-dump scenario
# once per backing; `secretmem.enable=0 mlock.vm=secrets` runs only the
# secret tests and one core dump, to prove the anonymous fallback in a real
# kernel. MLOCK_TEST_SECRETMEM tells tests/secret.rs which to expect.
# `mlock.run=suite,swap-pressure,core-dump` (any of them; default all) picks
# the scenarios of the suite boot. Every test binary runs with
# --include-ignored: here, as root with every capability in a real
# kernel, every test must run.

. /etc/prelude.sh
# Kernel messages would interleave with the summary lines; panics (level 0)
# still reach the console.
dmesg -n 1

say "kernel $(uname -r) on $(uname -m), $(grep MemTotal /proc/meminfo | tr -s ' ')"
echo "page-size $ARCH $KERNEL: $(vm_secret page-size)"
cmdline=$(cat /proc/cmdline)
secrets_only=no
case " $cmdline " in *" mlock.vm=secrets "*) secrets_only=yes ;; esac
case " $cmdline " in
    *" secretmem.enable=1 "*) export MLOCK_TEST_SECRETMEM=1 ;;
    *" secretmem.enable=0 "*) export MLOCK_TEST_SECRETMEM=0 ;;
esac
run=suite,swap-pressure,core-dump
for word in $cmdline; do
    case $word in mlock.run=*) run=${word#mlock.run=} ;; esac
done
wants() { case ",$run," in *",$1,"*) return 0 ;; esac; return 1; }
if [ "$secrets_only" = yes ]; then run=suite,core-dump; fi
say "secrets-only boot: $secrets_only; scenarios: $run; MLOCK_TEST_SECRETMEM=${MLOCK_TEST_SECRETMEM:-unset}"

# --- the integration test suite, as root, in the real kernel ---------------
if wants suite; then
    passed=0
    failed=0
    for t in /tests/*; do
        name=${t##*/}
        if [ "$secrets_only" = yes ] && [ "$name" != secret ]; then continue; fi
        say "running $name"
        "$t" --include-ignored > /tmp/test.out 2>&1
        rc=$?
        cat /tmp/test.out
        result=$(grep '^test result: ' /tmp/test.out | tail -n 1)
        if [ -z "$result" ]; then
            say "$name exited with status $rc and no libtest result line"
            failed=$((failed + 1))
            continue
        fi
        p=$(echo "$result" | sed -n 's/.* \([0-9][0-9]*\) passed;.*/\1/p')
        f=$(echo "$result" | sed -n 's/.* \([0-9][0-9]*\) failed;.*/\1/p')
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0}))
        if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
            say "$name exited with status $rc after: $result"
            failed=$((failed + 1))
        fi
    done
    echo "tests $ARCH $KERNEL: $passed passed, $failed failed"
    echo "secrets $ARCH $KERNEL: default=$(vm_secret backing)"
fi

# --- core dumps: a LockedBuf marker vs an ordinary one ---------------------
# $1: the backing vm_secret requires, or nothing for LockedBuf::new's choice.
core_dump() {
    rm -f /tmp/core.* /tmp/*.marker
    (cd /tmp && vm_secret $1)
    core=$(ls /tmp/core.* 2>/dev/null | head -n 1)
    if [ -n "$core" ] && [ -s /tmp/protected.marker ] && [ -s /tmp/control.marker ]; then
        say "core file $core: $(wc -c < "$core") bytes"
        # A binary-safe search: busybox grep ends a line at the first NUL of a line.
        protected=$(vm_secret find "$core" /tmp/protected.marker)
        control=$(vm_secret find "$core" /tmp/control.marker)
        echo "core-dump $ARCH $KERNEL: backing=$(cat /tmp/backing.marker) protected=$protected control=$control"
    else
        say "no core file or markers: $(ls /tmp)"
    fi
}
echo '/tmp/core.%e.%p' > /proc/sys/kernel/core_pattern
ulimit -c unlimited
if [ "$secrets_only" = yes ]; then
    core_dump
    finish
fi

# --- swap pressure: a locked process beside an unlocked twin ---------------
if wants swap-pressure; then
    # zram's modules, in load order (zsmalloc and compressors first).
    for m in /modules/*.ko; do
        insmod "$m" || say "insmod $m failed"
    done
    swap_ok=no
    if [ -e /sys/block/zram0/disksize ]; then
        echo 512M > /sys/block/zram0/disksize &&
            mkswap /dev/zram0 > /dev/null &&
            swapon /dev/zram0 && swap_ok=yes
    fi
    if [ "$swap_ok" = yes ]; then
        say "zram swap: $(grep SwapTotal /proc/meminfo | tr -s ' ')"
        vm_hold locked "$HOLD_MIB" &
        locked_pid=$!
        vm_hold unlocked "$HOLD_MIB" &
        unlocked_pid=$!
        i=0
        while [ ! -e /tmp/locked.ready ] || [ ! -e /tmp/unlocked.ready ]; do
            i=$((i + 1))
            if [ $i -gt 600 ]; then say "holders never got ready"; break; fi
            sleep 0.1
        done
        vm_hold hog || say "the hog ended with status $? (the OOM killer may have killed it)"
        say "after the hog: $(grep -E 'SwapFree' /proc/meminfo | tr -s ' ')"
        field() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }
        say "locked twin: VmLck=$(field $locked_pid VmLck) kB VmRSS=$(field $locked_pid VmRSS) kB"
        say "unlocked twin: VmLck=$(field $unlocked_pid VmLck) kB VmRSS=$(field $unlocked_pid VmRSS) kB"
        echo "swap-pressure $ARCH $KERNEL: locked VmSwap=$(field $locked_pid VmSwap) kB unlocked VmSwap=$(field $unlocked_pid VmSwap) kB"
        touch /tmp/report
        wait $locked_pid $unlocked_pid
        swapoff /dev/zram0
    else
        say "no zram swap device: the modules did not load"
    fi
fi

# --- core dumps, once per backing ----------------------------------------
if wants core-dump; then
    core_dump secretmem
    core_dump anonymous
fi

finish
