"""Files that do one job: no source file under src/ (Python, C, C headers) is over
MAX_LINES lines (issue 12, "One home for each meaning"). Split a file that grows past it
along its jobs (docs/architecture.md, "Packages")."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
MAX_LINES = 800
SUFFIXES = (".py", ".c", ".h")

# Files allowed over MAX_LINES, each with the cap it may not exceed. Keep this empty:
# an entry is a debt with an owner, removed when the file is split.
ALLOWED: dict[str, int] = {
}


def line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def source_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def test_sources_are_found():
    files = {p.relative_to(ROOT).as_posix() for p in source_files()}
    assert "src/tritium/frontend/parser.py" in files
    assert any(f.endswith(".c") for f in files) and any(f.endswith(".h") for f in files)


def test_no_source_file_is_over_the_limit():
    too_long = []
    for path in source_files():
        rel = path.relative_to(ROOT).as_posix()
        n = line_count(path)
        cap = ALLOWED.get(rel, MAX_LINES)
        if n > cap:
            too_long.append(f"{rel}: {n} lines (limit {cap})")
    assert not too_long, ("files over the line limit; split them along their jobs:\n  "
                          + "\n  ".join(too_long))


def test_allowed_entries_are_still_needed():
    """An allow-listed file that is back under the limit (or gone) leaves the list."""
    stale = [rel for rel in ALLOWED
             if not (ROOT / rel).is_file() or line_count(ROOT / rel) <= MAX_LINES]
    assert not stale, f"remove from ALLOWED (no longer over {MAX_LINES} lines): {stale}"
