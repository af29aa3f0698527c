#!/bin/bash
# Where a kernel-backend count's cost goes: ns per traced getppid() call of
# bench/loops.c with the kprobe p:__x64_sys_getppid armed in several ways, next
# to bpftrace count() and `kprobes count --backend kernel`, interleaved, 3 runs each.
# Needs hist triggers (run it in a guest): for times that do not depend on how
# busy the host is, count instructions:
#   KPROBES_VM_ICOUNT=0 .venv/bin/kprobes vm --kernel 6.1 -- bench/hist_cost.sh
# (1 ns of guest time per emulated instruction). VARIANTS, ROUNDS (3), N (200000)
# and NO_CHECK=1 (skip printing kprobes' own trigger) narrow it. Variants:
#   none          no tracing
#   traceon       the kprobe event soft-enabled by a trigger that needs no record
#                 (the kprobe's own cost, nothing built)
#   enabled       the event enabled: every hit written to the instance's ring buffer
#   hist_cpu      hist:keys=common_cpu:vals=hitcount, event soft-disabled (the record is
#                 built in the per-CPU buffered event, the map updated, nothing kept)
#   hist_cpu_pid  the same with set_event_pid = the workload (what -c adds)
#   hist_comm     keys=common_pid.execname (count --by comm)
#   hist_small    size=128 instead of 2048
#   bpftrace      kprobe:__x64_sys_getppid /pid == cpid/ { @ = count(); }
#   kprobes       kprobes count p:__x64_sys_getppid --backend kernel -c CMD
set -e
T=/sys/kernel/tracing
mountpoint -q $T || mount -t tracefs nodev $T
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
L=${LOOPS:-$TMP/loops}          # LOOPS: a prebuilt bench/loops.c (gcc is slow in a guest)
[ -x "$L" ] || gcc -O2 -o $L "$HERE/loops.c"
N=${N:-200000}
PY=${PY:-$(command -v python3)}
I=$T/instances/kcost
ns() { grep -o 'loop_ns=[0-9]*' | cut -d= -f2 | awk -v n=$N '{printf "%.0f", $1/n}'; }
setup() {
  echo 'p:kcost/gp __x64_sys_getppid' >> $T/kprobe_events
  mkdir -p $I
}
teardown() {
  for f in $I/events/kcost/gp/trigger; do
    grep -v '^#' $f | sed 's/ \[.*//' | while read -r l; do echo "!$l" >> $f; done
  done
  echo 0 > $I/events/kcost/gp/enable
  echo > $I/set_event_pid
  rmdir $I
  echo '-:kcost/gp' >> $T/kprobe_events
}
v_none()      { $L sys $N 2>&1 | ns; }
v_enabled()   { echo 1 > $I/events/kcost/gp/enable; $L sys $N 2>&1 | ns; echo 0 > $I/events/kcost/gp/enable; }
v_traceon()   { echo traceon > $I/events/kcost/gp/trigger; $L sys $N 2>&1 | ns; echo '!traceon' > $I/events/kcost/gp/trigger; }
v_hist_cpu()  { echo 'hist:keys=common_cpu:vals=hitcount:size=2048' > $I/events/kcost/gp/trigger; $L sys $N 2>&1 | ns; echo '!hist:keys=common_cpu:vals=hitcount:size=2048' > $I/events/kcost/gp/trigger; }
v_hist_cpu_pid() { echo 'hist:keys=common_cpu:vals=hitcount:size=2048' > $I/events/kcost/gp/trigger; sh -c "echo \$\$ > $I/set_event_pid; exec $L sys $N" 2>&1 | ns; echo > $I/set_event_pid; echo '!hist:keys=common_cpu:vals=hitcount:size=2048' > $I/events/kcost/gp/trigger; }
v_hist_comm() { echo 'hist:keys=common_pid.execname:vals=hitcount:size=2048' > $I/events/kcost/gp/trigger; $L sys $N 2>&1 | ns; echo '!hist:keys=common_pid.execname:vals=hitcount:size=2048' > $I/events/kcost/gp/trigger; }
v_hist_small() { echo 'hist:keys=common_cpu:vals=hitcount:size=128' > $I/events/kcost/gp/trigger; $L sys $N 2>&1 | ns; echo '!hist:keys=common_cpu:vals=hitcount:size=128' > $I/events/kcost/gp/trigger; }
v_bpftrace()  { bpftrace -e 'kprobe:__x64_sys_getppid /pid == cpid/ { @ = count(); }' -c "$L sys $N" 2>&1 | ns; }
v_kprobes()   { PYTHONPATH=$HERE/.. $PY -m kprobes count p:__x64_sys_getppid --backend kernel --json -c "$L sys $N" 2>&1 | ns; }
VARIANTS=${VARIANTS:-"none traceon enabled hist_cpu hist_cpu_pid hist_comm hist_small bpftrace kprobes"}
setup
set +e
# one unmeasured round (warm: bpftrace's first run maps LLVM)
bpftrace -e 'kprobe:__x64_sys_getppid { @ = count(); }' -c "$L sys 1000" >/dev/null 2>&1
declare -A R
for k in $(seq ${ROUNDS:-3}); do
  for v in $VARIANTS; do x=$(v_$v); R[$v]+="$x "; echo "  round $k $v: $x ns/call" >&2; done
done
teardown
for v in $VARIANTS; do   # runs, then the median (mawk has no sort: sort(1))
  med=$(echo ${R[$v]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf "%-14s ns/call %s (median %s)\n" "$v" "${R[$v]}" "$med"
done
[ -n "$NO_CHECK" ] && { rm -rf $TMP; exit 0; }
echo "kprobes' definition and trigger while it runs:"
PYTHONPATH=$HERE/.. $PY -m kprobes count p:__x64_sys_getppid --backend kernel -c "sh -c 'grep -h . $T/kprobe_events $T/instances/*/events/kprobes*/*/trigger $T/instances/*/events/kprobes*/*/enable $T/instances/*/set_event_pid; ls $T/instances'" 2>&1 | grep -v '^#' | head -20
rm -rf $TMP
