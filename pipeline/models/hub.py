"""Hugging Face Hub files at a pinned revision, checked by size and sha256 before use."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError


@dataclass(frozen=True)
class HubFile:
    repo: str
    filename: str
    revision: str  # a commit hash: the file can never change under us
    sha256: str
    size: int | None = None


def _verified_record() -> Path:
    root = Path(os.environ.get("STUDIO_CACHE", Path.home() / ".cache" / "face-studio"))
    return root / "verified.json"


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, source: HubFile) -> None:
    """Raise UserError unless ``path`` has the pinned size and sha256 (memoised per file)."""
    if source.size is not None and path.stat().st_size != source.size:
        raise UserError(f"{source.filename} from {source.repo} has {path.stat().st_size} bytes, expected {source.size}: not loaded")
    record = _verified_record()
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    key = _file_key(path)
    if known.get(key) == source.sha256:
        return
    actual = sha256_of(path)
    if actual != source.sha256:
        raise UserError(f"{source.filename} from {source.repo} fails its sha256 check ({actual[:12]}... != {source.sha256[:12]}...): not loaded")
    known[key] = actual
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(known))
    except OSError:
        pass  # a read-only home only costs a re-hash next time


def cached(source: HubFile) -> Path | None:
    """The file's path in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.repo, source.filename, revision=source.revision)
    return Path(found) if isinstance(found, str) else None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def fetch(sources: list[HubFile], model: str) -> Path:
    """Download (or find in the cache) the first source that works, verified."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    problems = []
    for source in sources:
        path = cached(source)
        if path is None:
            try:
                path = Path(hf_hub_download(source.repo, source.filename, revision=source.revision))
            except LocalEntryNotFoundError:
                problems.append(f"{source.repo} not in the local cache")
                continue
            except (HfHubHTTPError, OSError) as exc:
                problems.append(f"{source.repo}: {type(exc).__name__}")
                continue
        verify(path, source)
        return path
    how = "run once with a network connection, pre-fill the Hugging Face cache, or pass --checkpoint PATH"
    state = "this machine is offline" if offline() else "; ".join(problems)
    raise UserError(f"model {model!r} is not downloaded ({state}): {how}")
