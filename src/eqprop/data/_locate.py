"""Find the folder that holds a dataset's files: ``--data-dir``, then ``$EQPROP_DATA_DIR``, never a download."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from eqprop.data.idx import ENV_DATA_DIR
from eqprop.errors import DataError

__all__ = ["locate"]


def locate(
    name: str,
    files: Sequence[str],
    *,
    data_dir: str | os.PathLike[str] | None,
    subfolders: Sequence[str],
    hint: str,
) -> Path:
    """Return the first folder that holds every one of ``files``.

    Searched: ``data_dir`` when given (and then nothing else, so that a wrong ``--data-dir`` is reported
    rather than silently replaced), else ``$EQPROP_DATA_DIR`` when set; in each, the folder itself and then
    each of ``subfolders`` under it (e.g. ``cifar10`` and ``cifar-10-batches-py``).

    Raises:
        DataError: no searched folder holds all the files; the message names each existing folder searched
            with the first file it lacks (or the base folder as missing), and ``hint`` says where to put them.
    """
    if data_dir is not None:
        bases = [Path(data_dir).expanduser()]
    else:
        env = os.environ.get(ENV_DATA_DIR, "").strip()
        bases = [Path(env).expanduser()] if env else []
    searched: list[str] = []
    for base in bases:
        if not base.is_dir():
            searched.append(f"{base} (no such folder)")
            continue
        for folder in (base, *(base / sub for sub in subfolders)):
            if not folder.is_dir():
                continue  # an absent subfolder is not worth a line in the message
            missing = next((f for f in files if not (folder / f).is_file()), None)
            if missing is None:
                return folder
            searched.append(f"{folder} (no {missing})")
    where = "; ".join(searched) if searched else f"nowhere: no --data-dir given and {ENV_DATA_DIR} is not set"
    raise DataError(f"{name} files not found ({', '.join(files)}); searched {where}", hint=hint)
