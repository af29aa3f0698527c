#!/usr/bin/env bash
# Run every test: the quality gates (ruff, mypy), tests/unit + tests/host on
# this machine, then tests/kernel inside one QEMU VM per kernel of the matrix
# (Debian 6.1 and 6.12).
# Ends with one line "N passed, N failed, N skipped" over all runs (each gate
# counts as one test: any finding fails it); exits non-zero if anything failed
# or a VM did not come back.
#
# Environment: KPROBES_CI_KERNELS (default "6.1 6.12"), KPROBES_CI_RESULTS
# (folder for the junit files; default a fresh /tmp folder), KPROBES_VM_TIMEOUT
# (seconds per VM boot, default 900: at most two boots per kernel fit CI's 90 minutes),
# KPROBES_CI_PYTEST_ARGS (extra pytest arguments in the VMs, e.g. "-k smoke"),
# KPROBES_VM_TCG_THREAD (single, the default, or multi:
# see kprobes/vm/qemu.py for why multi-threaded TCG hangs guests),
# CI=true (skips for missing kernel features in the VM become failures).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
py="$repo/.venv/bin/python"
kernels=${KPROBES_CI_KERNELS:-"6.1 6.12"}
vm_timeout=${KPROBES_VM_TIMEOUT:-900}
read -r -a vm_pytest_args <<< "${KPROBES_CI_PYTEST_ARGS:-}"
results=${KPROBES_CI_RESULTS:-$(mktemp -d /tmp/kprobes-ci.XXXXXX)}
mkdir -p "$results"
rm -f "$results"/junit-*.xml
# the test programs built by the host's run, by source and flags, for the guests to
# copy instead of compiling (tests/targets/build.py; the guests see $results)
export KPROBES_TEST_BUILD_CACHE="$results/targets"
problems=()

if [ ! -x "$py" ]; then
    echo "error: no virtualenv at $repo/.venv: run bash .ci/setup.sh first" >&2
    exit 2
fi
if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/kernel/tracing; then
    mount -t tracefs nodev /sys/kernel/tracing || true
fi

# pytest exit status: 0 all passed, 1 some failed (counted from the junit
# file), 5 nothing collected; anything else means the run itself broke.
check_rc() {
    local what=$1 rc=$2
    case $rc in
        0|1|5) ;;
        *) problems+=("$what: pytest exited with $rc") ;;
    esac
}

# A gate is one command that must exit 0; it becomes a one-test junit file
# (junit-gate-NAME.xml) whose failure text is the command's output.
gate() {
    local name=$1 out rc
    shift
    echo "=== gate $name: $*"
    out=$("$@" 2>&1)
    rc=$?
    [ -n "$out" ] && printf '%s\n' "$out"
    "$py" - "$results/junit-gate-$name.xml" "$name" "$rc" "$out" <<'PY'
import sys
import xml.etree.ElementTree as ET

path, name, rc, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
suite = ET.Element("testsuite", name=f"gate-{name}", tests="1",
                   failures="1" if rc else "0", errors="0", skipped="0")
case = ET.SubElement(suite, "testcase", classname="gate", name=name)
if rc:
    ET.SubElement(case, "failure", message=f"{name} exited with {rc}").text = out
ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
PY
}

gate ruff "$py" -m ruff check kprobes tests bench
gate mypy "$py" -m mypy

host_dirs=()
# tests/fuzz: every fuzz target for KPROBES_FUZZ_SECONDS (default 5) each
for d in tests/unit tests/host tests/fuzz; do
    [ -d "$d" ] && host_dirs+=("$d")
done
if [ ${#host_dirs[@]} -gt 0 ]; then
    echo "=== host $(uname -r): pytest ${host_dirs[*]}"
    "$py" -m pytest "${host_dirs[@]}" -p no:cacheprovider -rs \
        --junitxml="$results/junit-host.xml"
    check_rc host $?
fi

for k in $kernels; do
    env_args=(--env "KPROBES_IN_VM=$k" --env "KPROBES_TEST_BUILD_CACHE=$KPROBES_TEST_BUILD_CACHE")
    # the guest sees neither the kernel cache nor its full /lib/modules: hand the
    # guest tests the modules they load (tests/targets/modules.py): dummy for
    # test_faults_kernel.py, loop for the biolatency test's loop device
    mods="$results/modules-$k"
    mkdir -p "$mods"
    cp /var/cache/kprobes/kernels/"$k".*/{,usr/}lib/modules/*/kernel/drivers/{net/dummy,block/loop}.ko* \
        "$mods"/ 2>/dev/null
    env_args+=(--env "KPROBES_TEST_MODULES=$mods")
    case ${CI:-} in
        true|1) env_args+=(--env KPROBES_REQUIRE_KERNEL=1) ;;
    esac
    # A guest that hangs or dies (no junit file comes back) is booted once more,
    # and the retry is reported; test failures are never retried.
    for attempt in 1 2; do
        echo "=== VM $k: pytest tests/kernel (attempt $attempt)"
        start=$(date +%s)
        rm -f "$results/junit-$k.xml"
        # --local: the tests run from a copy of the checkout, this Python and its
        # packages on the guest's tmpfs (the host's root is uncached 9p there: each
        # Python process would start ~3x slower); results come back through the
        # --rwdir folder; a test stuck for 5 minutes gets its stack dumped
        # (faulthandler) so a VM timeout names the culprit
        "$py" -m kprobes.cli.main vm --local --kernel "$k" --cpus 2 --memory 4G --cwd "$repo" \
            --rwdir "$results" --timeout "$vm_timeout" "${env_args[@]}" -- \
            "$py" -m pytest tests/kernel -p no:cacheprovider -p no:hypothesispytest \
            --continue-on-collection-errors -rs \
            -o faulthandler_timeout=300 --junitxml="$results/junit-$k.xml" "${vm_pytest_args[@]}"
        rc=$?
        echo "=== VM $k: exit status $rc after $(( $(date +%s) - start )) s"
        [ -s "$results/junit-$k.xml" ] && break
        echo "=== VM $k: no results came back (exit status $rc)" >&2
    done
    if [ ! -s "$results/junit-$k.xml" ]; then
        problems+=("VM $k did not come back twice (exit status $rc, no $results/junit-$k.xml)")
    else
        [ "$attempt" -gt 1 ] && echo "warning: VM $k needed a second boot" >&2
        check_rc "VM $k" "$rc"
    fi
done

for p in "${problems[@]}"; do
    echo "error: $p" >&2
done
echo "results: $results"
"$py" - "$results" "${#problems[@]}" <<'PY'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

passed = failed = skipped = 0
for f in sorted(Path(sys.argv[1]).glob("junit-*.xml")):
    root = ET.parse(f).getroot()
    for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
        n = int(suite.get("tests", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skip = int(suite.get("skipped", 0))
        passed += n - bad - skip
        failed += bad
        skipped += skip
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or int(sys.argv[2]) else 0)
PY
