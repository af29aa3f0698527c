"""The type index: where each type record starts, and which types have which name.

One pass over the type section (as 32-bit words) records each type's word
offset, computing the record length from the kind and ``vlen`` alone, and
collects ``(name_off << 32) | type_id`` for every named type, sorted.  Names
are never decoded here: a lookup finds the name's offset in the string
section with one C-speed ``find`` and bisects the sorted keys.

The index is cached on disk, keyed on the SHA-1 of the BTF bytes (for split
BTF: of the base's key plus the split bytes).  Files under ``/sys`` have no
meaningful mtime and a kernel build id does not cover module BTF after a
module is rebuilt, so the bytes themselves are the only identity that is right
for every file; hashing 5.5 MB costs about 3 ms.  Cache directory:
``$KPROBES_CACHE_DIR/btf`` if set, else ``/var/cache/kprobes/btf`` when
running as root, else ``$XDG_CACHE_HOME/kprobes/btf`` (``~/.cache``).  A
missing, unreadable or corrupt cache file is rebuilt silently; an
unwritable cache directory just means no cache.

>>> import array
>>> words = array.array("I", [1, 0x01000000, 4, 32,   0, 0x02000000, 1])
>>> offsets, names = scan(words, first_id=1)
>>> list(offsets), [(k >> 32, k & 0xffffffff) for k in names]
([0, 4], [(1, 1)])
"""

from __future__ import annotations

import array
import os

from kprobes.errors import BTFError

__all__ = ["scan", "cache_dir", "cache_key", "load_index", "store_index", "FIXED_WORDS",
           "PER_VLEN_WORDS"]

# Extra 32-bit words after the 3-word common header, by kind: fixed + per vlen.
# None marks kinds we do not know (so cannot skip).
FIXED_WORDS: tuple[int | None, ...] = (
    None, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0,
) + (None,) * 12
PER_VLEN_WORDS: tuple[int, ...] = (
    0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3,
) + (0,) * 12

_MAGIC = b"KPBTFIX1"
_HEADER = 8 + 40 + 4 + 4  # magic, hex key, ntypes, nnames


def scan(words, first_id: int) -> tuple[array.array, array.array]:
    """Walk the type section ``words`` (a sequence of u32) once.

    Returns ``(offsets, names)``: ``offsets[i]`` is the word offset of type
    ``first_id + i``; ``names`` is the sorted array of
    ``(name_off << 32) | type_id`` for named types.  Raises BTFError on an
    unknown kind or a record that runs past the end.

    >>> scan([0, 0x7f000000, 0], 1)
    Traceback (most recent call last):
    ...
    kprobes.errors.BTFError: BTF type id 1 at byte 0 of the type section has unknown kind 31
    """
    n = len(words)
    fixed = FIXED_WORDS
    per = PER_VLEN_WORDS
    offsets = array.array("I")
    append = offsets.append
    i = 0
    try:
        while i < n:
            info = words[i + 1]
            k = (info >> 24) & 0x1F
            append(i)
            i += 3 + fixed[k] + per[k] * (info & 0xFFFF)
    except TypeError:  # fixed[k] is None: unknown kind
        tid = first_id + len(offsets) - 1
        raise BTFError(f"BTF type id {tid} at byte {4 * offsets[-1]} of the type section "
                       f"has unknown kind {k}") from None
    except IndexError:  # a record header that does not fit
        raise BTFError(f"BTF type id {first_id + len(offsets)} at byte {4 * i} runs past the end "
                       f"of the type section ({4 * n} bytes): truncated or corrupt BTF") from None
    if i != n:
        tid = first_id + len(offsets) - 1
        raise BTFError(f"BTF type id {tid} at byte {4 * offsets[-1]} runs past the end of the "
                       f"type section ({4 * n} bytes): truncated or corrupt BTF")
    named = [(words[o] << 32) | (first_id + j) for j, o in enumerate(offsets) if words[o]]
    named.sort()
    return offsets, array.array("Q", named)


def cache_dir() -> str:
    """The directory index files go to (see the module docstring).

    >>> import os; os.environ["KPROBES_CACHE_DIR"] = "/tmp/x"; cache_dir()
    '/tmp/x/btf'
    >>> del os.environ["KPROBES_CACHE_DIR"]
    """
    env = os.environ.get("KPROBES_CACHE_DIR")
    if env:
        return os.path.join(env, "btf")
    if os.geteuid() == 0:
        return "/var/cache/kprobes/btf"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "kprobes", "btf")


def cache_key(data, base_key: str | None = None) -> str:
    """SHA-1 hex of the BTF bytes (prefixed by the base's key for split BTF).

    >>> cache_key(b"abc")
    'a9993e364706816aba3e25717850c26c9cd0d89d'
    """
    import hashlib

    h = hashlib.sha1(usedforsecurity=False)
    if base_key:
        h.update(base_key.encode())
    h.update(data)
    return h.hexdigest()


def load_index(directory: str, key: str, nwords: int) -> tuple[array.array, array.array] | None:
    """Read a cached index for ``key``; None if absent or not usable."""
    path = os.path.join(directory, key + ".idx")
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    if len(blob) < _HEADER or blob[:8] != _MAGIC or blob[8:48] != key.encode():
        return None
    ntypes = int.from_bytes(blob[48:52], "little")
    nnames = int.from_bytes(blob[52:56], "little")
    if len(blob) != _HEADER + 4 * ntypes + 8 * nnames:
        return None
    offsets = array.array("I")
    offsets.frombytes(blob[_HEADER:_HEADER + 4 * ntypes])
    names = array.array("Q")
    names.frombytes(blob[_HEADER + 4 * ntypes:])
    if offsets.itemsize != 4 or names.itemsize != 8:  # pragma: no cover - exotic platforms
        return None
    if ntypes and (offsets[0] != 0 or offsets[-1] >= nwords):
        return None
    return offsets, names


def store_index(directory: str, key: str, offsets: array.array, names: array.array) -> bool:
    """Write the index atomically (temp file + rename); False if it could not be written."""
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = os.path.join(directory, f".{key}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(_MAGIC + key.encode() + len(offsets).to_bytes(4, "little")
                    + len(names).to_bytes(4, "little"))
            f.write(offsets.tobytes())
            f.write(names.tobytes())
        os.replace(tmp, os.path.join(directory, key + ".idx"))
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass
        return False
