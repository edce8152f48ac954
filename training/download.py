"""``training download-ecg5000``: fetch the tutorial's ECG5000 file and verify its sha256.

The file is streamed to a temporary file next to the destination, hashed on the way, and
renamed into place only if the sha256 matches; a mismatch leaves nothing behind. ``url``
may be ``https://``, ``http://``, ``file://`` or a plain local path (handy offline and in
tests).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from training.errors import DownloadError

__all__ = ["ECG5000_SHA256", "ECG5000_URL", "download"]

ECG5000_URL = "https://storage.googleapis.com/download.tensorflow.org/data/ecg.csv"
ECG5000_SHA256 = "72ce7b040ca0c6ed36c3368e570c6ac4ddf20100476e47373c63b2395e012df1"
CHUNK = 1 << 16


def _open(url: str, timeout_s: float):  # type: ignore[no-untyped-def]
    if "://" not in url:
        return Path(url).open("rb")
    return urllib.request.urlopen(url, timeout=timeout_s)


def download(
    url: str = ECG5000_URL,
    dest: Path = Path("data/ecg5000/ecg5000.csv"),
    sha256: str = ECG5000_SHA256,
    timeout_s: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` if its sha256 is ``sha256``.

    Raises:
        DownloadError: the fetch failed or the content has another sha256.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    digest = hashlib.sha256()
    size = 0
    try:
        with _open(url, timeout_s) as src, tmp.open("wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"{url}: download failed: {reason}") from exc
    actual = digest.hexdigest()
    if actual != sha256.lower():
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: sha256 {actual} does not match the expected {sha256} ({size} bytes); "
            "nothing was written"
        )
    tmp.replace(dest)
    return dest
