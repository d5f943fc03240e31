"""Files only the Tollway user may read: the data directory 0700, what is in it 0600.

The data directory holds the SQLite database (key hashes and every customer's data), the admin token
and key-hash secret, the usage WAL, and Envoy's bootstrap and logs; under the usual umask 022 all of
it was world-readable (0644, directories 0755). Modes are set explicitly where each is created, so
they hold whatever the umask of the process that starts Tollway.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Creates `path` (and missing parents) and makes it 0700 (tightening a directory that exists)."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIRECTORY_MODE:
        path.chmod(DIRECTORY_MODE)
    return path


def private_file(path: Path, *, truncate: bool = False) -> Path:
    """Creates `path` 0600 when missing (emptied with `truncate`); tightens one that exists."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    os.close(os.open(path, flags, FILE_MODE))
    if path.stat().st_mode & 0o777 != FILE_MODE:
        path.chmod(FILE_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Replaces `path`'s content with `text`, the file 0600."""
    private_file(path, truncate=True)
    path.write_text(text)


def private_sqlite(database_url: str) -> None:
    """Creates a SQLite database file 0600 before SQLite does (it would use 0644); its journal and WAL
    files take the database file's mode. Other databases: nothing to do."""
    from sqlalchemy.engine import make_url  # here: the CLI imports this module and starts fast

    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return
    path = Path(url.database)
    # A directory made for the database is private; one that exists is the operator's to keep.
    path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    private_file(path)
