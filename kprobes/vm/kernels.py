"""Debian kernels for the VM harness: find, download, unpack and cache them.

``fetch_kernel("6.1")`` / ``fetch_kernel("6.12")`` return a :class:`KernelImage`
from ``/var/cache/kprobes/kernels`` (``$KPROBES_KERNEL_CACHE``), fetching the
newest ``linux-image-*-amd64`` package with ``apt-get download`` and
``dpkg -x`` on first use; a suite the host's apt sources do not list goes
through a private sources list under the cache.  See :mod:`kprobes.vm`.

>>> KERNELS["6.12"].matches("6.12.57+deb13-amd64")
True
>>> KERNELS["6.1"].matches("6.12.57+deb13-amd64")
False
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import KprobesError, NotSupported

__all__ = [
    "KERNELS",
    "KernelImage",
    "KernelSource",
    "AptSource",
    "kernel_cache_dir",
    "host_apt_sources",
    "debian_mirror",
    "cached_kernels",
    "fetch_kernel",
]

DEFAULT_CACHE = "/var/cache/kprobes/kernels"
_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_DEBIAN_SUITES = frozenset({
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable",
})


@dataclass(frozen=True)
class KernelSource:
    """Where one kernel of the test matrix comes from.

    ``version_re`` matches the kernel release (``uname -r``); the package is
    ``linux-image-<release>`` (signed) or ``linux-image-<release>-unsigned``.
    """

    name: str
    suite: str
    version_re: str

    def matches(self, version: str) -> bool:
        """True when ``version`` (a ``uname -r`` string) belongs to this kernel."""
        return re.fullmatch(self.version_re, version) is not None


#: The test matrix: Debian 12's 6.1 and Debian 13's 6.12, generic amd64 flavour
#: (the -cloud- flavour lacks 9p and hangs vng; -rt is a different kernel).
KERNELS: dict[str, KernelSource] = {
    "6.1": KernelSource("6.1", "bookworm", r"6\.1\.0-\d+-amd64"),
    "6.12": KernelSource("6.12", "trixie", r"6\.12\.\d+\+deb\d+-amd64"),
}


@dataclass(frozen=True)
class KernelImage:
    """A bootable kernel: ``version`` is its ``uname -r``, ``vmlinuz`` its image.

    ``root`` is the unpacked package (``None`` for a kernel given by path) and
    ``package`` the Debian package it came from, when known.
    """

    name: str
    version: str
    vmlinuz: Path
    root: Path | None = None
    package: str | None = None

    @property
    def moddir(self) -> Path | None:
        """The kernel's ``lib/modules/<version>`` folder, if it has one."""
        if self.root is None:
            return None
        for rel in ("lib/modules", "usr/lib/modules"):
            d = self.root / rel / self.version
            if d.is_dir():
                return d
        return None


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` source of the host's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None


def kernel_cache_dir() -> Path:
    """The kernel cache: ``$KPROBES_KERNEL_CACHE`` or ``/var/cache/kprobes/kernels``."""
    return Path(os.environ.get("KPROBES_KERNEL_CACHE") or DEFAULT_CACHE)


# ---------------------------------------------------------------- apt sources

def _parse_one_line(text: str) -> list[AptSource]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        opts: dict[str, str] = {}
        m = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        if m:
            for kv in m.group(1).split():
                k, _, v = kv.partition("=")
                opts[k.lower()] = v
            rest = m.group(2).split()
        else:
            rest = line.split()[1:]
        if len(rest) >= 2:
            out.append(AptSource(rest[0], (rest[1],), tuple(rest[2:]), opts.get("signed-by")))
    return out


def _parse_deb822(text: str) -> list[AptSource]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += "\n" + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        signed = fields.get("signed-by")
        if signed and "\n" in signed:  # an inline key, not a path
            signed = None
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                 tuple(fields.get("components", "").split()), signed))
    return out


def host_apt_sources(etc: str = "/etc/apt") -> list[AptSource]:
    """All ``deb`` entries of the host's apt sources (one-line and deb822 files)."""
    out: list[AptSource] = []
    files = [os.path.join(etc, "sources.list")]
    files += sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.list")))
    files += sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.sources")))
    for f in files:
        try:
            text = Path(f).read_text(errors="replace")
        except OSError:
            continue
        out += _parse_deb822(text) if f.endswith(".sources") else _parse_one_line(text)
    return out


def _is_debian_main(src: AptSource) -> bool:
    return "security" not in src.uri and any(s in _DEBIAN_SUITES for s in src.suites)


def debian_mirror(sources: Iterable[AptSource] | None = None) -> AptSource:
    """The host's Debian archive mirror (not the security one).

    ``$KPROBES_DEBIAN_MIRROR`` (a URI) overrides what the host's apt sources say.
    """
    override = os.environ.get("KPROBES_DEBIAN_MIRROR")
    if override:
        return AptSource(override, (), ("main",), _KEYRING if os.path.exists(_KEYRING) else None)
    for src in sources if sources is not None else host_apt_sources():
        if _is_debian_main(src):
            return src
    raise KprobesError(
        "no Debian mirror in the host's apt sources (/etc/apt/sources.list*)",
        hint="set KPROBES_DEBIAN_MIRROR to a Debian archive URI, or pass a vmlinuz path "
             "with --kernel")


# ---------------------------------------------------------------- apt calls

def _run_tool(argv: Sequence[str], *, cwd: str | None = None,
              what: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    try:
        return subprocess.run(list(argv), cwd=cwd, env=env, text=True,
                              capture_output=True, check=False)
    except FileNotFoundError as e:
        raise NotSupported(f"{argv[0]} not found (needed to {what})", feature=argv[0],
                           hint="fetching kernels needs a Debian or Ubuntu host with apt-get "
                                "and dpkg; or pass a vmlinuz path with --kernel") from e


def _tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


class _Apt:
    """apt-get/apt-cache with either the host's configuration or a private one."""

    def __init__(self, suite: str, cache: Path) -> None:
        self.suite = suite
        self.opts: list[str] = []
        self.private = False
        sources = host_apt_sources()
        mirror = debian_mirror(sources)
        host_has_suite = not os.environ.get("KPROBES_DEBIAN_MIRROR") and any(
            suite in s.suites for s in sources if _is_debian_main(s))
        if host_has_suite:
            return
        self.private = True
        state = cache / "apt" / suite
        for d in ("lists/partial", "cache/archives/partial"):
            (state / d).mkdir(parents=True, exist_ok=True)
        signed = f" [signed-by={mirror.signed_by}]" if mirror.signed_by else ""
        line = f"deb{signed} {mirror.uri} {suite} main\n"
        (state / "sources.list").write_text(line)
        self.opts = [
            "-o", f"Dir::Etc::sourcelist={state / 'sources.list'}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={state / 'lists'}",
            "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "APT::Get::List-Cleanup=0",
        ]
        self.updated = any((state / "lists").glob("*_Packages*"))

    def update(self) -> None:
        r = _run_tool(["apt-get", *self.opts, "update"], what="update the apt lists")
        if r.returncode != 0 or re.search(r"^(E|W): (Failed|Some index)", r.stderr, re.M):
            raise KprobesError(
                f"apt-get update for Debian {self.suite} failed: {_tail(r.stderr)}",
                hint="check the network and the mirror (KPROBES_DEBIAN_MIRROR)")

    def candidates(self, pattern: str) -> list[str]:
        posix = pattern.replace(r"\d", "[0-9]")  # apt's regex is POSIX ERE
        r = _run_tool(["apt-cache", *self.opts, "search", "--names-only", f"^{posix}$"],
                      what="search the apt lists")
        if r.returncode != 0:
            raise KprobesError(f"apt-cache search failed: {_tail(r.stderr)}",
                               hint="run apt-get update")
        names = [ln.split(" - ", 1)[0].strip() for ln in r.stdout.splitlines()]
        return [n for n in names if re.fullmatch(pattern, n)]

    def download(self, package: str, dest: Path) -> Path:
        r = _run_tool(["apt-get", *self.opts, "-o", "APT::Sandbox::User=root", "download",
                       package], cwd=str(dest), what="download the kernel package")
        debs = sorted(dest.glob(f"{glob.escape(package)}_*.deb"))
        if r.returncode != 0 or not debs:
            raise KprobesError(f"apt-get download {package} failed: {_tail(r.stderr)}",
                               hint="check the network and the mirror (KPROBES_DEBIAN_MIRROR); "
                                    "stale lists may name a package the mirror dropped: "
                                    "retry with --refresh, or apt-get update")
        return debs[-1]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


# ---------------------------------------------------------------- the cache

def cached_kernels(cache: Path | None = None) -> list[KernelImage]:
    """Kernels already unpacked in the cache, oldest first."""
    cache = cache or kernel_cache_dir()
    out = []
    for d in sorted(cache.glob("*/boot"), key=lambda p: _version_key(p.parent.name)):
        version = d.parent.name
        vmlinuz = d / f"vmlinuz-{version}"
        if vmlinuz.is_file():
            name = next((k for k, s in KERNELS.items() if s.matches(version)), version)
            pkg = (d.parent / ".package").read_text().strip() \
                if (d.parent / ".package").is_file() else None
            out.append(KernelImage(name, version, vmlinuz, d.parent, pkg))
    return out


def _link_modules(kernel: KernelImage) -> None:
    """Best effort: make ``/lib/modules/<version>`` point at the cached modules."""
    moddir = kernel.moddir
    if moddir is None:
        return
    link = Path("/lib/modules") / kernel.version
    try:
        if link.is_symlink():
            if os.readlink(link) == str(moddir):
                return
            link.unlink()
        elif link.exists():  # a real installed kernel: leave it alone
            return
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(moddir)
    except OSError:
        pass  # not root: vng finds the modules next to the image anyway


def _unpack(deb: Path, version: str, package: str, cache: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=cache))
    try:
        r = _run_tool(["dpkg", "-x", str(deb), str(tmp)], what="unpack the kernel package")
        if r.returncode != 0:
            raise KprobesError(f"dpkg -x {deb.name} failed: {_tail(r.stderr)}")
        if not (tmp / "boot" / f"vmlinuz-{version}").is_file():
            raise KprobesError(f"{deb.name} has no boot/vmlinuz-{version}")
        # Debian 13 ships modules under usr/lib only; give every tool lib/ too.
        if not (tmp / "lib").exists() and (tmp / "usr" / "lib").is_dir():
            (tmp / "lib").symlink_to("usr/lib")
        depmod = shutil.which("depmod", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        if depmod:
            _run_tool([depmod, "-a", "-b", str(tmp), version], what="index the modules")
        (tmp / ".package").write_text(package + "\n")
        final = cache / version
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "boot" / f"vmlinuz-{version}").is_file():
                raise
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _kernel_from_path(path: str) -> KernelImage:
    p = Path(path).resolve()
    if not p.is_file():
        raise KprobesError(f"no kernel image at {path}",
                           hint="use --kernel 6.1, --kernel 6.12 or a path to a vmlinuz")
    m = re.match(r"vmlinu[xz]-(.+)$", p.name)
    version = m.group(1) if m else p.name
    root = p.parent.parent if p.parent.name == "boot" else None
    return KernelImage(path, version, p, root)


def fetch_kernel(name: str, *, refresh: bool = False) -> KernelImage:
    """Return a bootable kernel for ``name``: ``"6.1"``, ``"6.12"`` or a vmlinuz path.

    A kernel already in the cache is returned without network access, unless
    ``refresh`` asks apt for a newer one.  Raises ``KprobesError`` (with a
    hint) when the package cannot be found or downloaded.
    """
    source = KERNELS.get(name)
    if source is None:
        if "/" in name or os.path.exists(name):
            return _kernel_from_path(name)
        raise KprobesError(f"unknown kernel {name!r}",
                           hint=f"use one of {', '.join(KERNELS)} or a path to a vmlinuz")
    cache = kernel_cache_dir()
    if not refresh:
        have = [k for k in cached_kernels(cache) if source.matches(k.version)]
        if have:
            _link_modules(have[-1])
            return have[-1]
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KprobesError(f"cannot create the kernel cache {cache}: {e.strerror}",
                           hint="run as root or set KPROBES_KERNEL_CACHE to a writable "
                                "folder") from e
    apt = _Apt(source.suite, cache)
    if apt.private and (refresh or not apt.updated):
        apt.update()
    pattern = rf"linux-image-({source.version_re})(-unsigned)?"
    names = apt.candidates(pattern)
    if not names:
        raise KprobesError(
            f"no {pattern} package in Debian {source.suite}",
            hint="run apt-get update (the host's lists may be stale or missing)"
                 if not apt.private else "check the mirror (KPROBES_DEBIAN_MIRROR)")

    def key(n: str) -> tuple[tuple[int, ...], int]:
        version = re.fullmatch(pattern, n).group(1)  # type: ignore[union-attr]
        return _version_key(version), 0 if n.endswith("-unsigned") else 1

    package = max(names, key=key)
    version = re.fullmatch(pattern, package).group(1)  # type: ignore[union-attr]
    final = cache / version
    if not (final / "boot" / f"vmlinuz-{version}").is_file():
        with tempfile.TemporaryDirectory(prefix=".download.", dir=cache) as dl:
            deb = apt.download(package, Path(dl))
            _unpack(deb, version, package, cache)
    kernel = KernelImage(name, version, final / "boot" / f"vmlinuz-{version}", final, package)
    _link_modules(kernel)
    return kernel
