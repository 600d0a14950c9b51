# Sourced first by every busybox /init of `cargo xtask vm` (init.sh,
# swap-deadlock.sh), packed as /etc/prelude.sh: the shell's commands, the kernel's
# file systems, the boot's settings, and the two functions every script uses.

/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
. /etc/vm.conf

say() { echo "vm: $*"; }
finish() {
    say "done"
    sync
    poweroff -f
}
