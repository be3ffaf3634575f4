"""Crash-safe file writes shared by every layer: write a temporary file beside the target,
then rename it over the target (atomic on POSIX), so a reader never sees a half file. The
result gets the permissions a plain ``open()`` would give (0666 masked by the umask), so
shared data roots and results folders stay readable by the group."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None]) -> Path:
    """Call ``writer(tmp_path)`` to fill a temporary file in ``path``'s folder, then rename
    it to ``path``; on any error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))


def _open(url: str, offset: int, timeout: float):
    """A readable stream of ``url`` from byte ``offset`` and whether it honoured the
    offset (``file://`` seeks; HTTP asks for a Range)."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlparse(url)
    if parts.scheme == "file":
        fh = open(urllib.request.url2pathname(parts.path), "rb")  # noqa: SIM115 (returned)
        fh.seek(offset)
        return fh, True, os.fstat(fh.fileno()).st_size
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    resp = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) and file only)
    resumed = offset > 0 and getattr(resp, "status", 200) == 206
    length = resp.headers.get("Content-Length")
    total = (int(length) + (offset if resumed else 0)) if length else None
    return resp, resumed, total


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
             progress: bool = True, timeout: float = 60.0, what: str = "file", sha256_prefix: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` with a progress bar: the bytes go to ``<dest>.part`` (kept
    after an interruption, and continued from where it stopped on the next call), are
    checked against ``sha256`` / ``md5`` / a published ``sha256_prefix`` (torchvision's file
    names) when given (a mismatch deletes the partial file and
    raises, leaving ``dest`` untouched), then renamed to ``dest`` atomically. Network
    failures raise an OSError that names the URL and the destination."""
    import hashlib
    import urllib.error

    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    try:
        stream, resumed, total = _open(url, offset, timeout)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise OSError(f"could not download the {what} from {url} ({err}); fetch it by hand and place it at {dest}") \
            from err
    if not resumed:
        offset = 0
    with stream, open(part, "ab" if resumed else "wb") as out, \
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
        try:
            while block := stream.read(1 << 20):
                out.write(block)
                bar.update(len(block))
        except OSError as err:
            raise OSError(f"the download of {url} broke off after {out.tell()} bytes ({err}); run it again to "
                          f"continue into {part}") from err
    for algo, want, whole in (("sha256", sha256, True), ("md5", md5, True), ("sha256", sha256_prefix, False)):
        if want:
            h = hashlib.new(algo)
            with open(part, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
            if (h.hexdigest() != want) if whole else not h.hexdigest().startswith(want):
                part.unlink(missing_ok=True)
                raise ValueError(f"{url} has {algo} {h.hexdigest()}, expected {want}; nothing was written to {dest}")
    os.chmod(part, 0o666 & ~_umask())
    os.replace(part, dest)
    return dest
