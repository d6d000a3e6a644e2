"""Safe file I/O: every file gcompress writes or reads goes through here.

Writing (:func:`write_atomic`): the bytes go to a temporary file with a
unique name, created exclusively (``O_EXCL``, so an existing file or a
symlink planted at that name is never opened) in the destination's
directory; it is fsynced and then moved into place in one step, by a hard
link that fails if the destination exists (no clobber) or by a rename that
replaces the destination entry itself, never the target of a symlink there
(``overwrite``).  Readers never see a partial file, a failure or an
interrupt leaves no debris, and an existing file is never replaced without
``overwrite``.  Only a ``kill -9`` between creating and renaming the
temporary file can leave it behind: it is hidden (``.name.<random>.tmp``) and
:func:`remove_stale_temporaries` clears such files.

Reading (:func:`read_regular`): only regular files (a FIFO named
``x.gcz`` would block forever, ``/dev/zero`` never ends), never more than a
stated number of bytes.
"""

import glob
import os
import secrets
import stat

from compression.errors import CompressionError

__all__ = ["write_atomic", "open_regular", "read_regular", "remove_stale_temporaries",
           "TEMPORARY_SUFFIX"]

#: Suffix of the hidden temporary files of :func:`write_atomic`.
TEMPORARY_SUFFIX = ".tmp"


def _exists_message(path):
    return f"{path} already exists; pass --force (overwrite=True) to overwrite it"


def write_atomic(path, data, overwrite=False):
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically.

    Raises:
        FileExistsError: ``path`` exists (as anything, a dangling symlink
            included) and ``overwrite`` is false; the message names ``--force``.
        CompressionError: the destination cannot be written (a directory, a
            missing parent, no permission, disk full, ...), naming the path.
    """
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if os.path.isdir(path) and not os.path.islink(path):
        raise CompressionError(f"cannot write {path}: it is a directory")
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(_exists_message(path))
    directory, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}")
    created = False
    try:
        # 0o666: the umask decides the permissions, as for any plain open().
        flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_BINARY", 0))
        descriptor = os.open(temp, flags, 0o666)
        created = True
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            _link_no_clobber(temp, path)
        _sync_directory(directory)
    except FileExistsError:
        raise
    except OSError as exc:
        raise CompressionError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if created:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass  # renamed into place


def _link_no_clobber(temp, path):
    try:
        os.link(temp, path)  # fails atomically if ``path`` exists, unlike rename
    except FileExistsError:
        raise FileExistsError(_exists_message(path)) from None
    except OSError:
        # Filesystems without hard links (FAT, some network mounts): check,
        # then rename; a tiny race, but readers still see whole files only.
        if os.path.lexists(path):
            raise FileExistsError(_exists_message(path)) from None
        os.replace(temp, path)


def _sync_directory(directory):
    """fsync the directory so the rename itself survives a power cut (POSIX only)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data is synced
    finally:
        os.close(descriptor)


def open_regular(path, what="file"):
    """Open ``path`` for binary reading if it is a regular file; ``(handle, size)``.

    Opened without blocking, so a FIFO is refused instead of waiting for a
    writer forever; devices (``/dev/zero``) and directories are refused too.

    Raises:
        CompressionError: missing, unreadable, or not a regular file.
    """
    path = os.fspath(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                             | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise CompressionError(f"cannot read {path}: {exc.strerror or exc}") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        kind = ("a directory" if stat.S_ISDIR(info.st_mode) else
                "a FIFO" if stat.S_ISFIFO(info.st_mode) else
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "something else")
        raise CompressionError(f"cannot read {path}: it is {kind}, not a regular {what}")
    return os.fdopen(descriptor, "rb"), info.st_size


def read_regular(path, max_bytes, what="file"):
    """The bytes of the regular file ``path`` (:func:`open_regular`), at most ``max_bytes``.

    Raises:
        CompressionError: missing, unreadable, not a regular file, or larger
            than ``max_bytes`` (the message names the limit).
    """
    path = os.fspath(path)
    handle, size = open_regular(path, what)
    with handle:
        if size > max_bytes:
            raise CompressionError(
                f"cannot read {path}: {size} bytes is more than any valid {what} "
                f"within the limits can be ({max_bytes} bytes)")
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise CompressionError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # the file grew while we read it
        raise CompressionError(f"cannot read {path}: it is larger than {max_bytes} bytes")
    return data


def remove_stale_temporaries(directory, patterns=(f".*{TEMPORARY_SUFFIX}",)):
    """Delete leftover temporary files matching ``patterns`` in ``directory``; their names.

    For directories only one process writes to (a run directory): another
    writer's temporary file of the moment would match too.
    """
    removed = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(glob.escape(os.fspath(directory)), pattern))):
            if os.path.isfile(path) and not os.path.islink(path):
                try:
                    os.remove(path)
                    removed.append(os.path.basename(path))
                except OSError:
                    pass
    return removed
