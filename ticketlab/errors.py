"""User-facing errors: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import errno


class TicketlabError(Exception):
    """An error caused by the user's input (config, data, paths); shown without a traceback."""


class ConfigError(TicketlabError):
    """A configuration value is missing, unknown or out of range."""


class DataError(TicketlabError):
    """A dataset is missing, corrupt or cannot be fetched."""


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# Errors of a path the user chose or owns (permissions, read-only or full disks, files where directories belong).
PATH_ERRNOS = DISK_FULL_ERRNOS | frozenset({
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT,
    errno.ENAMETOOLONG, errno.ELOOP, errno.ETXTBSY, errno.EMLINK, errno.EIO, errno.EBUSY, errno.ENXIO,
})
_HINTS = {
    errno.ENOSPC: "free some space or choose another --root",
    errno.EDQUOT: "free some space (disk quota exceeded) or choose another --root",
    errno.EFBIG: "the file is larger than allowed here (ulimit -f?); choose another --root",
    errno.EACCES: "check its permissions or choose another --root",
    errno.EPERM: "check its permissions or choose another --root",
    errno.EROFS: "it is on a read-only file system; choose another --root",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "a file is in the way of a directory",
}


def os_error_message(error: OSError) -> str | None:
    """One line for an OSError the user can fix (a path's permissions, a full disk, a file in the way); None
    for any other OSError, which is treated as an internal error."""
    if error.errno not in PATH_ERRNOS or (error.filename is None and error.errno not in DISK_FULL_ERRNOS):
        return None
    reason = error.strerror or errno.errorcode.get(error.errno, "error")
    where = f": {error.filename}" if error.filename is not None else ""
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    hint = _HINTS.get(error.errno)
    return f"{reason[0].lower() + reason[1:]}{where}" + (f" ({hint})" if hint else "")


class TrainingDiverged(TicketlabError):
    """A job's weights became inf or NaN: the settings (usually train.lr) make training unstable."""


class IntegrityError(TicketlabError):
    """A run-directory file is damaged: it does not parse, or its content differs from its recorded sha256."""


class RunLockedError(TicketlabError):
    """Another process is training into the same run directory."""
