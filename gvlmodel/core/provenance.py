"""Provenance records and atomic output writing."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .version import __version__


def _tree_digest(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def package_digest() -> str:
    """Hash of the package's source files, shipped sets and data (a change re-runs everything)."""
    pkg = Path(__file__).resolve().parents[1]  # the gvlmodel package folder
    files = [*pkg.rglob("*.py"), *pkg.glob("parameter_sets/*.toml"), *pkg.glob("data/*.toml")]
    return __version__ + ":" + _tree_digest(files)[:16]


def git_commit(path: Path | None = None) -> str:
    """The current git commit of the source tree, or "unknown" outside git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parents[1]  # the package folder
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            # tracked changes anywhere; untracked files only inside the package (a new, uncommitted module
            # would run), not a run's own output folder or an exported model elsewhere in the checkout
            status = ["git", "status", "--porcelain"]
            dirty = (subprocess.run(status + ["--untracked-files=no"], cwd=where, capture_output=True, text=True,
                                    timeout=10).stdout.strip()
                     or subprocess.run(status + ["--untracked-files=normal", "--", "."], cwd=where,
                                       capture_output=True, text=True, timeout=10).stdout.strip())
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def provenance(config: dict, seed: int | None) -> dict:
    """The record every output folder carries.  ``seed=None`` marks a deterministic run
    (no random numbers are drawn), and the record says so."""
    import numba
    import numpy
    import scipy

    return {
        "gvlmodel_version": __version__,
        "git_commit": git_commit(),
        "seed": seed,
        **({"seed_note": "deterministic: this run draws no random numbers"} if seed is None else {}),
        "config": config,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {"numpy": numpy.__version__, "scipy": scipy.__version__, "numba": numba.__version__},
    }


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class AtomicFile:
    """A file written in parts and published atomically: ``out/.name.XXXX.tmp`` while it is written,
    renamed to ``path`` by :meth:`commit`; :meth:`discard` removes it (nothing left behind)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.fh = os.fdopen(fd, "wb")

    def commit(self) -> None:
        self.fh.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        try:
            self.fh.close()
        except OSError:  # its buffered data cannot be written (the reason to discard it)
            pass
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


#: the lock file every command holds in its output folder while it writes there
LOCK_NAME = ".gvlmodel.lock"
_HELD: dict[str, int] = {}  # resolved folder -> the open, locked file descriptor (this process)
_CREATED: set[str] = set()  # folders lock_outputs created (removed again by abandon_outputs if left empty)


def lock_outputs(out: Path, option: str = "--out") -> None:
    """Take the exclusive lock on output folder ``out`` (created if needed) for this process.

    An advisory ``flock`` on ``out/.gvlmodel.lock``: a second gvlmodel process writing into the same
    folder gets an :class:`~gvlmodel.core.errors.InputError` (exit 2) naming the holder, before it writes
    anything there.  The kernel drops the lock when its process ends, however it ends, so a lock left
    by a killed run is recovered by the next one (its lock file stays until then), which also removes the
    temporary files (``.*.tmp``) such a run left in ``out`` and its subfolders
    (:func:`_remove_stale_temporaries`); ``option`` names the folder in the message.
    Re-entrant within a process; released, and the lock file removed, by :func:`finish_outputs` (or
    dropped at exit).
    """
    import fcntl
    import socket

    from .errors import InputError

    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise InputError(f"{option} {out}: a symbolic link to nothing ({os.readlink(out)}); create its target "
                         "folder or choose another folder")
    if not out.exists():
        missing = [out] + [a for a in out.parents if not (a.exists() or a.is_symlink())]
        out.mkdir(parents=True, exist_ok=True)
        _CREATED.update(str(f.resolve()) for f in missing)  # the parents it made too
    key = str(out.resolve())
    if key in _HELD:
        return
    path = out / LOCK_NAME
    while True:
        # never through a link (it would truncate the file it points to), nor into a folder or device
        odd = "a link, folder or special file" if path.is_symlink() or (path.exists() and not path.is_file()) else ""
        if not odd:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            except OSError as exc:  # (one put there meanwhile)
                odd = exc.strerror or str(exc)
        if odd:
            raise InputError(f"{option} {out}: {path} is not a gvlmodel lock file ({odd}); remove it or choose "
                             "another folder")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
            finally:
                os.close(fd)
            raise InputError(f"{option} {out}: another gvlmodel run ({holder}) is writing to this folder; "
                             "wait for it to finish or choose another folder") from None
        try:  # the file we locked must still be the one at the path (a releasing run unlinks it)
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                  f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n".encode(), 0)
    _HELD[key] = fd
    _remove_stale_temporaries(out)


def _remove_stale_temporaries(out: Path) -> None:
    """Remove the temporary files (``.*.tmp``) that killed runs left in ``out``, whose lock this process
    has just taken, and in its subfolders (a study's ``samples/``, ``evaluations/``, a fit's ``stages/``):
    every writer there holds this lock.

    A subfolder with a lock file of its own is another run's output folder (held, or left by a killed run)
    and is left alone: its own lock's next holder cleans it.  A folder's files are listed before its lock
    file is looked for, so a run that takes that lock in between has the lock file in place, and one that
    takes it later writes only files the listing does not hold.  Symbolic links are not followed.
    """
    for root, dirs, files in os.walk(out):
        here = Path(root)
        stale = [here / name for name in files if name.startswith(".") and name.endswith(".tmp")]
        if here != out and (LOCK_NAME in files or (here / LOCK_NAME).exists()):
            dirs[:] = []
            continue
        for path in stale:
            try:
                if path.is_file() and not path.is_symlink():
                    path.unlink()
            except OSError:
                pass


def release_outputs(out: Path) -> None:
    """Release this process's lock on ``out`` (if held) and remove the lock file."""
    fd = _HELD.pop(str(Path(out).resolve()), None)
    if fd is not None:
        try:
            (Path(out) / LOCK_NAME).unlink(missing_ok=True)  # while still locked: no one else holds this file
        finally:
            os.close(fd)  # closing the descriptor drops the flock


def abandon_outputs() -> None:
    """After a refused or failed run: release every output folder this process holds and remove the
    ones it created that are empty again, so an error leaves nothing behind."""
    for key in list(_HELD):
        release_outputs(Path(key))
    for key in sorted(_CREATED, reverse=True):
        try:
            Path(key).rmdir()  # only if empty
        except OSError:
            pass
    _CREATED.clear()


def unpublish(out: Path, names) -> None:
    """After a failure while publishing a one-shot run's files (``simulate``, ``example``): remove the files
    ``names`` it had already published in ``out`` if this run created ``out`` (nothing there is anyone
    else's), so the failure leaves no folder behind (:func:`abandon_outputs` then removes it).  In a folder
    that existed before, they stay, without ``provenance.json``: the folder is marked incomplete."""
    out = Path(out)
    if str(out.resolve()) in _CREATED:
        for name in names:
            (out / name).unlink(missing_ok=True)


def finish_outputs(out: Path, record: dict) -> None:
    """Write ``out/provenance.json`` (last: the folder is complete) and release the folder's lock."""
    atomic_write_json(Path(out) / "provenance.json", record)
    release_outputs(out)
    done = Path(out).resolve()
    for key in [k for k in _CREATED if done == Path(k) or Path(k) in done.parents]:  # it and the parents it made
        _CREATED.discard(key)


def entry_in_the_way(folder: Path, suffixes: tuple[str, ...]) -> Path | None:
    """The first path under ``folder`` that stands where a run saves state: ``folder`` itself if it is not
    a folder, or an entry below it named like the run's files (``suffixes``) that is not a regular file (a
    folder in a file's place); ``None`` if there is none (or no ``folder``).

    Resumable commands check their saved state with this before they change anything: such an entry was
    otherwise found only when the run's result could not be written over it, after the work.
    """
    folder = Path(folder)
    if not (folder.exists() or folder.is_symlink()):
        return None
    if not folder.is_dir():
        return folder
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            path = Path(root) / name
            if name.endswith(suffixes) and not path.is_file():
                return path
    return None


def begin_outputs(out: Path) -> None:
    """Lock ``out`` (:func:`lock_outputs`) and mark it incomplete before a run's first write:
    remove its ``provenance.json``.

    Each command writes ``provenance.json`` last, so its presence means every
    file of the run beside it was written.  A run interrupted after its first
    write into a folder used before then leaves a folder without provenance,
    not one whose provenance describes an earlier run's config beside a mix of
    old and new files.
    """
    lock_outputs(out)
    (Path(out) / "provenance.json").unlink(missing_ok=True)


def prune_outputs(out: Path, known, keep) -> list[str]:
    """Remove the files among ``known`` (names in ``out``) that this run does not write (``keep``).

    A command writing into a folder used before must not leave an earlier run's
    output beside its new provenance (e.g. ``trajectories.csv`` from a run that
    asked for trajectories, under a provenance that asked for none).  Only the
    command's own file names are touched; anything else in ``out`` is left alone.
    Returns the names removed.
    """
    out = Path(out)
    removed = []
    for name in known:
        if name not in keep and (out / name).is_file():
            (out / name).unlink()
            removed.append(name)
    return removed


def resolved_config(cfg) -> dict:
    """A validated config dataclass as plain data, every default and quick-mode size applied
    (the ``raw`` text it came from is recorded separately as ``config``)."""
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "raw"}


def provenance_of(cfg, seed: int | None) -> dict:
    """:func:`provenance` of a validated config dataclass: its raw text plus the resolved values."""
    prov = provenance(cfg.raw, seed=seed)
    prov["resolved"] = resolved_config(cfg)
    return prov
