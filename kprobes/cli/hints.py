"""Hints that lead to what the user wanted, from what this kernel has.

A tracepoint refuses fetch args (``t:syscalls:sys_enter_openat
+0(filename):ustring``): its fields arrive by name, but a ``char *`` field is
only the pointer. What reads the string depends on the kernel: a kprobe on the
kernel function behind the syscall (arguments by name from BTF, ``char *``
read as the string), or, without kprobes, a uprobe on the C library's wrapper
of the same name, which gets the same arguments in the same registers.
"""

from __future__ import annotations

import re

from ..errors import KprobesError, SpecError

__all__ = ["better_spec_hint", "tracepoint_args_hint", "SYSCALL_FUNCTIONS", "LIBC_PATH_CALLS"]

#: syscall -> (kernel function that gets its path as a C string, that parameter's name)
SYSCALL_FUNCTIONS = {
    "open": ("do_sys_openat2", "filename"),
    "openat": ("do_sys_openat2", "filename"),
    "openat2": ("do_sys_openat2", "filename"),
    "creat": ("do_sys_openat2", "filename"),
}

#: syscall -> the C library functions that end in it, with the path's argument index
#: (glibc's open() and open64() issue openat with AT_FDCWD)
LIBC_PATH_CALLS = {
    "openat": (("open64", 0), ("openat", 1)),
    "open": (("open64", 0),),
}

_REGS = ("%di", "%si", "%dx", "%cx", "%r8", "%r9")   # x86-64 C calling convention


def better_spec_hint(e: SpecError) -> None:
    """Replace the hint of a tracepoint-with-args refusal by one for this kernel."""
    spec = e.spec or ""
    m = re.match(r"\s*t:([\w-]+)[:/](\w+)\s+(.+)", spec)
    if not m or "take no fetch arguments" not in str(e):
        return
    hint = tracepoint_args_hint(m.group(1), m.group(2), m.group(3))
    if hint:
        e.hint = hint


def _fields(tfs: object, group: str, event: str) -> list[tuple[str, str]]:
    from ..decode.format import parse_format
    try:
        fmt = parse_format(tfs.event_format(group, event), group)  # type: ignore[attr-defined]
    except (KprobesError, OSError):
        return []
    return [(f.name, f.decl) for f in fmt.arg_fields if f.name != "__syscall_nr"]


def tracepoint_args_hint(group: str, event: str, args: str) -> str | None:
    """What reads ``args`` (typed after a tracepoint) on this kernel, as a command."""
    from ..kernel.tracefs import Tracefs
    try:
        tfs = Tracefs.open()
    except KprobesError:
        return None
    fields = _fields(tfs, group, event)
    names = [n for n, _ in fields]
    wanted = [w for w in re.findall(r"[A-Za-z_]\w*", args) if w in names]
    field = wanted[0] if wanted else next((n for n, d in fields if "char *" in d),
                                          names[0] if names else None)
    has_kprobes = tfs.has("kprobe_events")
    call = event.split("_", 2)[2] if group == "syscalls" and event.startswith("sys_") else None
    base = f"tracepoint fields arrive by name: 'kprobes trace t:{group}:{event}' prints them all"
    if call and field:
        decl = dict(fields)[field]
        if has_kprobes:
            fn = SYSCALL_FUNCTIONS.get(call)
            if fn and (field == fn[1] or "char *" in decl):
                return (f"to read {field} as a string, probe the kernel function behind the "
                        f"syscall (arguments by name from BTF, char * read as the string): "
                        f"kprobes trace 'p:{fn[0]} {fn[1]}'")
            return (f"{base}; to read through {field}, probe the kernel function that takes "
                    f"it (find it with: kprobes list 'p:*{call}*'), e.g. "
                    f"kprobes trace 'p:FUNCTION {field}' (arguments by name from BTF)")
        i = names.index(field)
        calls = LIBC_PATH_CALLS.get(call) if "char *" in decl else None
        calls = calls or ((call, i),)
        specs = []
        for libfn, j in calls:
            if j < len(_REGS) and _libc_has(libfn):
                fetch = f"+0({_REGS[j]}):ustring" if "char *" in decl else f"{_REGS[j]}:s64"
                specs.append(f"'u:libc:{libfn} {field}={fetch}'")
        if specs:
            names_ = " and ".join(f"{c}()" for c, _ in calls)
            return (f"this kernel has no kprobes; the C library's {names_} get the same "
                    f"arguments in user space: kprobes trace {' '.join(specs)}")
    if has_kprobes:
        return (f"{base}; to fetch more, probe the kernel function behind it: "
                "kprobes trace 'p:FUNCTION ARG' (arguments by name from BTF)")
    return f"{base}; this kernel has no kprobes (uprobes read user memory: u:PATH:SYMBOL ARGS)"


def _libc_has(name: str) -> bool:
    from ..kernel.elf import list_symbols
    try:
        return bool(list_symbols("libc", name))
    except (KprobesError, OSError):
        return False
