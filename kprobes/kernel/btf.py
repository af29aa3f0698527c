"""BTF bytes -> types: the kernel-layer name for :mod:`kprobes.btf`.

The reader lives in the :mod:`kprobes.btf` package (reader, index cache,
C spelling, fetch-arg compiler); this module re-exports it so
``kprobes.kernel.btf`` keeps working as ARCHITECTURE.md lists it.

>>> from kprobes.kernel.btf import BTF
>>> BTF.for_kernel().func_proto("vfs_read").ret.name        # doctest: +SKIP
'ssize_t'
"""

from kprobes.btf import (
    BTF,
    VMLINUX,
    Enumerator,
    FetchPlan,
    FuncSig,
    Member,
    Param,
    Type,
    VarSecInfo,
    compile_fetch,
)

__all__ = [
    "BTF",
    "VMLINUX",
    "Type",
    "Member",
    "Param",
    "Enumerator",
    "VarSecInfo",
    "FuncSig",
    "FetchPlan",
    "compile_fetch",
]
