#!/bin/busybox sh
# /init of the swap-deadlock boots of `cargo xtask vm` (xtask/src/vm/swap_deadlock/ packs
# it): one boot per protection mode, because a deadlocked kernel cannot go
# on. The mode comes from the kernel command line (SWAP_DEADLOCK_MODE=none|lock|
# harden, which the kernel passes to /init as an environment variable).
#
# The only swap is an NBD device served by examples/nbd_swap.rs, or with
# TRANSPORT=ublk a ublk device served by examples/ublk_swap.rs. A memory
# hog (test-programs/src/bin/vm_swap_deadlock.rs) writes checkable pages well past RAM and reads
# them back; a locked watchdog samples memory and, when swap I/O stalls,
# dumps the blocked tasks and crashes the kernel. The host reads the
# console: the daemon's counters, the hog's verdict, the kernel's reports.
# /etc/vm.conf sets ARCH, TRANSPORT, HOG_MIB, SWAP_MIB, STORE_MIB, STALL_S, HUNG_S.

. /etc/prelude.sh
MODE=${SWAP_DEADLOCK_MODE:-none}

# Everything the kernel says reaches the console: the blocked tasks' stacks
# are printed at KERN_INFO.
dmesg -n 8
# Nothing between the hog and the daemon's device: no compressed RAM cache
# in front of swap, no huge pages that swap out whole.
[ -w /sys/module/zswap/parameters/enabled ] && echo N > /sys/module/zswap/parameters/enabled
[ -w /sys/kernel/mm/transparent_hugepage/enabled ] && echo never > /sys/kernel/mm/transparent_hugepage/enabled
# The kernel's own detector: a task in D state for HUNG_S seconds panics.
echo "$HUNG_S" > /proc/sys/kernel/hung_task_timeout_secs
echo 1 > /proc/sys/kernel/hung_task_panic

say "kernel $(uname -r) on $(uname -m), $(grep MemTotal /proc/meminfo | tr -s ' '), mode $MODE"

# The transport (TRANSPORT in /etc/vm.conf): nbd_swap on /dev/nbd0, or
# ublk_swap on /dev/ublkb0.
case "$TRANSPORT" in
ublk)
    args=
    dev=ublkb0
    ;;
*)
    args="nbds_max=1 max_part=0"
    dev=nbd0
    ;;
esac
for m in /modules/*.ko; do
    # shellcheck disable=SC2086 # the module's arguments, split on purpose
    insmod "$m" $args || { say "insmod $m failed"; finish; }
done

if [ "$TRANSPORT" = ublk ]; then
    ublk_swap --device-id 0 --size-mib "$SWAP_MIB" --store-mib "$STORE_MIB" \
        --protect "$MODE" --stats-ms 500 &
else
    nbd_swap --device /dev/nbd0 --size-mib "$SWAP_MIB" --store-mib "$STORE_MIB" \
        --protect "$MODE" --stats-ms 500 &
fi
daemon=$!
# The device's size appears once the daemon serves (NBD_DO_IT; ublk's
# START_DEV adds the disk).
i=0
while [ "$(cat /sys/block/$dev/size 2>/dev/null)" = 0 ] || [ ! -e /sys/block/$dev/size ] ||
    [ ! -b /dev/$dev ]; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 $daemon 2>/dev/null; then
        echo "swap-deadlock-end error=the-daemon-never-served"
        finish
    fi
    sleep 0.1
done
mkswap /dev/$dev > /dev/null && swapon /dev/$dev || {
    echo "swap-deadlock-end error=swapon-failed"
    finish
}
say "swap: $(grep SwapTotal /proc/meminfo | tr -s ' ') on /dev/$dev"

vm_swap_deadlock watch "$STALL_S" 500 &
watch=$!
vm_swap_deadlock hog "$HOG_MIB"
hog=$?
kill $watch
swapoff /dev/$dev && swapoff=ok || swapoff=failed
kill -TERM $daemon
wait $daemon
daemon_rc=$?
echo "swap-deadlock-end hog=$hog swapoff=$swapoff daemon=$daemon_rc"
finish
