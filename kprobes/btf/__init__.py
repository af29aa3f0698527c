"""Pure-Python BTF: read the kernel's type information and compile field paths.

* :class:`BTF` (``reader.py``) - header, lazy per-type decoding, name lookup,
  C spelling; the index of type offsets and names is cached on disk
  (``index.py``).
* :func:`compile_fetch` (``fetch.py``) - ``how->flags`` -> ``+0(%dx):u64``.
* :class:`Builder` (``build.py``) - write BTF blobs (tests, examples).

>>> from kprobes.btf import BTF, compile_fetch
>>> btf = BTF.for_kernel()                                   # doctest: +SKIP
>>> sig = btf.func_proto("vfs_read")                         # doctest: +SKIP
>>> compile_fetch(btf, sig, "file->f_pos").arg               # doctest: +SKIP
'+64(%di):s64'
"""

from kprobes.btf.fetch import FetchPlan, compile_fetch
from kprobes.btf.reader import BTF, VMLINUX
from kprobes.btf.types import Enumerator, FuncSig, Member, Param, Type, VarSecInfo

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
