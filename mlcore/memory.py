"""This process's memory, split as an operator sizes hosts (Linux /proc; no torch).

`private` is what only this process holds (anonymous memory, `RssAnon`: weights converted
to another precision, activations, copies); `file_backed` is mapped files such as safetensors
weights read in place, which the page cache shares between processes on one host.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

GB = 1024**3


@dataclass(frozen=True)
class MemoryReport:
    rss: int  # bytes resident now
    private: int  # anonymous + private file pages: only this process
    file_backed: int  # resident pages of mapped files (shareable page cache)
    peak_rss: int  # VmHWM: the most resident at any time so far

    def as_gb(self) -> dict[str, float]:
        return {k: round(v / GB, 3) for k, v in asdict(self).items()}


def _kb_fields(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            out[key.strip()] = int(parts[0]) * 1024
    return out


def memory_report(pid: int | str = "self") -> MemoryReport:
    """Current and peak memory of a process (default: this one)."""
    status = _kb_fields(Path(f"/proc/{pid}/status"))
    return MemoryReport(
        rss=status.get("VmRSS", 0),
        private=status.get("RssAnon", 0) + status.get("RssShmem", 0),
        file_backed=status.get("RssFile", 0),
        peak_rss=status.get("VmHWM", 0),
    )
