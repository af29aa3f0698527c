"""The vng command line the VM runner builds (no VM is booted here)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from kprobes.errors import KprobesError
from kprobes.vm import KernelImage, vm_command

K = KernelImage("6.1", "6.1.0-56-amd64", Path("/cache/6.1.0-56-amd64/boot/vmlinuz-6.1.0-56-amd64"))


def _opt(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_tcg_is_single_threaded_by_default(monkeypatch):
    """Multi-threaded TCG hangs guests that patch hot code (see vm.py)."""
    monkeypatch.delenv("KPROBES_VM_KVM", raising=False)
    monkeypatch.delenv("KPROBES_VM_TCG_THREAD", raising=False)
    cmd = vm_command(K, ["true"], cwd="/work")
    assert "--disable-kvm" in cmd
    assert "--qemu-opts=-accel tcg,thread=single" in cmd
    monkeypatch.setenv("KPROBES_VM_TCG_THREAD", "multi")
    assert "--qemu-opts=-accel tcg,thread=multi" in vm_command(K, ["true"], cwd="/work")
    monkeypatch.setenv("KPROBES_VM_TCG_THREAD", "fast")
    with pytest.raises(KprobesError, match="KPROBES_VM_TCG_THREAD"):
        vm_command(K, ["true"], cwd="/work")


def test_icount_for_load_independent_guest_times(monkeypatch):
    monkeypatch.delenv("KPROBES_VM_KVM", raising=False)
    monkeypatch.delenv("KPROBES_VM_TCG_THREAD", raising=False)
    monkeypatch.delenv("KPROBES_VM_ICOUNT", raising=False)
    assert not any("icount" in a for a in vm_command(K, ["true"], cwd="/work"))
    monkeypatch.setenv("KPROBES_VM_ICOUNT", "3")
    assert ("--qemu-opts=-accel tcg,thread=single -icount shift=3,sleep=on"
            in vm_command(K, ["true"], cwd="/work"))
    for bad, thread in (("x", "single"), ("11", "single"), ("3", "multi")):
        monkeypatch.setenv("KPROBES_VM_ICOUNT", bad)
        monkeypatch.setenv("KPROBES_VM_TCG_THREAD", thread)
        with pytest.raises(KprobesError, match="KPROBES_VM_ICOUNT"):
            vm_command(K, ["true"], cwd="/work")


def test_kvm_has_no_tcg_options(monkeypatch):
    monkeypatch.setenv("KPROBES_VM_KVM", "1")
    cmd = vm_command(K, ["true"], cwd="/work")
    assert "--disable-kvm" not in cmd and not any(a.startswith("--qemu-opts") for a in cmd)


def test_guest_command_carries_env_and_argv(monkeypatch):
    monkeypatch.delenv("KPROBES_VM_KVM", raising=False)
    cmd = vm_command(K, ["python", "-c", "print('a b')"], cwd="/work", rwdirs=["/tmp/r"],
                     env={"KPROBES_IN_VM": "6.1"}, memory="4G", cpus=2)
    assert _opt(cmd, "--run") == str(K.vmlinuz)
    assert (_opt(cmd, "--memory"), _opt(cmd, "--cpus"), _opt(cmd, "--rwdir")) == \
        ("4G", "2", "/tmp/r")
    inner = shlex.split(_opt(cmd, "--exec"))
    assert inner[:2] == ["env", "--"]
    assert "KPROBES_IN_VM=6.1" in inner and "PYTHONDONTWRITEBYTECODE=1" in inner
    # the guest's /var/cache is read-only: the BTF index is cached in its /tmp
    assert "KPROBES_CACHE_DIR=/tmp/kprobes-cache" in inner
    assert inner[-3:] == ["python", "-c", "print('a b')"]


def test_command_too_long_for_the_kernel_command_line(monkeypatch):
    monkeypatch.delenv("KPROBES_VM_KVM", raising=False)
    with pytest.raises(KprobesError, match="too long"):
        vm_command(K, ["echo", "x" * 2000], cwd="/work")
    assert vm_command(K, ["echo", "x" * 100], cwd="/work")[-1].endswith("x" * 100)
