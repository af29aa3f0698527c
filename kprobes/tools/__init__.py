"""bcc-style tools built on the public library: ``kprobes TOOL`` or
``python -m kprobes.tools.TOOL`` (opensnoop, execsnoop, exitsnoop, killsnoop).
Shared scaffolding: :mod:`.common`."""

__all__: list[str] = []
