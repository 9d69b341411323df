"""Leave nothing half-done: temporary files, atomic writes and transactions.

Three context managers, each with one promise that holds whatever the body
does, ``KeyboardInterrupt`` included:

- ``safe_temp_file`` yields the path of a private (mode 0600) file that is
  gone after the block.
- ``atomic_write`` yields a file object; the target gets the new content in
  one atomic step on success and is byte-for-byte untouched on failure (but
  for a directory fsync that fails after the replace: see its docstring).
- ``database_transaction`` yields a cursor; commit on success, rollback on
  failure, cursor always closed, the original exception always the one seen.

``async_temp_file`` and ``async_database_transaction`` are the ``async with``
twins. Nothing here catches an exception for good: cleanup runs and the
original exception propagates with its traceback. A cleanup step that fails
while an exception is propagating is logged on the ``resilient.cleanup``
logger and added to that exception as a PEP 678 note, never raised over it.

This module imports nothing else of ``resilient`` but the private version
shims, and never imports ``asyncio``.
"""

from __future__ import annotations

import codecs
import errno
import logging
import os
import stat
import sys
from contextlib import AbstractAsyncContextManager, AbstractContextManager, suppress
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Literal,
    Protocol,
    TextIO,
    TypeVar,
    cast,
    overload,
)

from resilient._compat import add_note
from resilient._redact import describe_error, error_fields, log_with_traceback, type_name

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

__all__ = [
    "async_database_transaction",
    "async_temp_file",
    "atomic_write",
    "database_transaction",
    "safe_temp_file",
]

logger = logging.getLogger("resilient.cleanup")

_NEWLINES = (None, "", "\n", "\r", "\r\n")
_TMP_SUFFIX = ".tmp"
_NAME_ATTEMPTS = 100
# fsync on a directory is refused by some filesystems (and means nothing there).
_FSYNC_DIR_UNSUPPORTED = frozenset(
    {errno.EINVAL, errno.EBADF, errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)}
)


# --------------------------------------------------------------------------- #
# safe_temp_file / async_temp_file
# --------------------------------------------------------------------------- #


def safe_temp_file(
    suffix: str = "", prefix: str = "tmp", dir: str | os.PathLike[str] | None = None
) -> AbstractContextManager[Path]:
    """Create a private temporary file and remove it when the block ends.

    The file exists, is empty and has mode 0600 (whatever the umask) when the
    block starts. Its descriptor is already closed: open the path yourself (on
    Windows an open descriptor would stop others from opening it). On exit the
    file is removed, whether the block succeeded or raised; a file the block
    already removed or renamed away is not an error.

    Args:
        suffix: end of the file name, e.g. ``".json"``.
        prefix: start of the file name.
        dir: the directory to create the file in; the system temporary
            directory (``tempfile.gettempdir()``) when ``None``.

    Returns:
        A context manager whose ``with`` target is the file's absolute
        ``pathlib.Path``.

    Raises:
        TypeError: *suffix* or *prefix* is not a ``str``, or *dir* is not a
            path.
        ValueError: *suffix* or *prefix* contains a path separator.
    """
    return _TempFile(suffix, prefix, dir)


def async_temp_file(
    suffix: str = "", prefix: str = "tmp", dir: str | os.PathLike[str] | None = None
) -> AbstractAsyncContextManager[Path]:
    """``async with`` twin of ``safe_temp_file``, with the same guarantees.

    Creating and removing an empty file are metadata operations that take
    microseconds, so they run directly in the event loop rather than in a
    worker thread (which would cost more than it saves). Read and write the
    file however suits your program.

    Args:
        suffix: end of the file name.
        prefix: start of the file name.
        dir: the directory to create the file in; the system temporary
            directory when ``None``.

    Returns:
        An async context manager whose target is the file's ``pathlib.Path``.
    """
    return _AsyncTempFile(_TempFile(suffix, prefix, dir, name="async_temp_file"))


class _TempFile:
    """Strictly private. The context manager behind ``safe_temp_file``."""

    __slots__ = ("_dir", "_name", "_path", "_prefix", "_suffix")

    def __init__(
        self,
        suffix: str,
        prefix: str,
        dir: str | os.PathLike[str] | None,
        *,
        name: str = "safe_temp_file",
    ) -> None:
        self._name = name
        self._suffix = _check_name_part("suffix", suffix)
        self._prefix = _check_name_part("prefix", prefix)
        self._dir = None if dir is None else _check_path("dir", dir)
        self._path: str | None = None

    def __enter__(self) -> Path:
        import tempfile  # noqa: PLC0415 - keep `import resilient` light
        from pathlib import Path  # noqa: PLC0415 - keep `import resilient` light

        if self._path is not None:
            raise _reentered(self._name)
        fd, name = tempfile.mkstemp(suffix=self._suffix, prefix=self._prefix, dir=self._dir)
        try:
            os.close(fd)
            # mkstemp asks for 0600 but the umask may take bits away.
            os.chmod(name, 0o600)
        except BaseException:
            _unlink_quietly(name)
            raise
        self._path = name
        return Path(name)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        name, self._path = self._path, None
        if name is None:
            return
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        except OSError as error:
            if exc is None:
                raise
            _report(
                exc,
                error,
                f"safe_temp_file could not remove its temporary file {name!r}",
                "the file is left on disk",
                action="remove",
                path=name,
            )


class _AsyncTempFile:
    """Strictly private. The async context manager behind ``async_temp_file``."""

    __slots__ = ("_sync",)

    def __init__(self, sync: _TempFile) -> None:
        self._sync = sync

    async def __aenter__(self) -> Path:
        return self._sync.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sync.__exit__(exc_type, exc, tb)


# --------------------------------------------------------------------------- #
# atomic_write
# --------------------------------------------------------------------------- #

TextMode = Literal["w", "wt", "tw", "x", "xt", "tx", "w+", "wt+", "x+", "xt+"]
BinaryMode = Literal["wb", "bw", "xb", "bx", "wb+", "w+b", "xb+", "x+b"]


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: TextMode = "w",
    *,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    permissions: int | None = None,
) -> AbstractContextManager[TextIO]: ...


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: BinaryMode,
    *,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    permissions: int | None = None,
) -> AbstractContextManager[BinaryIO]: ...


# A mode known only at run time: text or binary, the checker cannot tell, so
# the text-only arguments are refused here as the run time refuses them in
# binary mode (a literal text mode takes them, through the first overload).
@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: str,
    *,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    permissions: int | None = None,
) -> AbstractContextManager[IO[Any]]: ...


def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    permissions: int | None = None,
) -> AbstractContextManager[IO[Any]]:
    """Replace the file at *path* with what the block writes, all or nothing.

    The block writes to a new temporary file in the same directory as *path*
    (named ``.<name>.<random>.tmp``). If the block succeeds, the file is
    flushed and fsynced, given its permissions, moved over *path* with
    ``os.replace`` (atomic: a reader sees the old file or the new one, never a
    mix) and the directory is fsynced so the rename survives a power cut. If
    the block raises anything, ``KeyboardInterrupt`` included, the temporary
    file is removed, *path* is untouched and the exception propagates as it
    was raised; the same holds when a commit step before the replace (flush,
    fsync, ``chmod``, the replace itself) fails.

    One step runs after the replace: the directory fsync. If it raises
    ``OSError``, *path* already holds the complete new content (the old one
    is gone) but the rename may not survive a power cut.

    Permissions: an existing file keeps its permission bits (owner, group,
    ACLs and extended attributes are not copied; hard links to the old file
    keep the old content). A new file gets ``0o666 & ~umask`` like ``open``
    would give it. *permissions* overrides both. A symbolic link at *path* is
    followed: the file it points to is replaced, the link stays.

    Mode ``"x"`` (and ``"xb"``) fails with ``FileExistsError`` when *path*
    exists when the block starts, and never overwrites a file that appears
    while the block runs.

    A process killed without a chance to clean up (``SIGKILL``, power loss)
    can leave the temporary file behind; *path* itself is never torn.

    The returned object is one write: entering it again inside its own block
    raises ``RuntimeError``.

    Args:
        path: the file to write.
        mode: ``"w"`` (text, the default), ``"wb"`` (binary), ``"x"`` or
            ``"xb"`` (only if *path* does not exist); ``"t"`` and ``"+"`` may
            be added as for ``open``.
        encoding: text encoding; ``None`` means UTF-8 (not the locale's
            encoding as for ``open``: pass ``"locale"`` for that). Text modes
            only.
        errors: how encoding errors are handled, as for ``open``.
        newline: newline translation, as for ``open``.
        permissions: permission bits for the file, e.g. ``0o600``; ``None``
            keeps the existing file's bits or applies the umask to a new file.

    Returns:
        A context manager whose ``with`` target is the open file object
        (text or binary according to *mode*).

    Raises:
        ValueError: a bad *mode*, *encoding* (unknown, or a codec that is
            not a text encoding such as ``"hex"``), *errors*, *newline* or
            *permissions*, or a text-only argument in binary mode; raised at
            the call, before anything is created.
        TypeError: *path* is not a path.
    """
    target = _check_path("path", path)
    if not target:
        raise ValueError(f"path must not be empty, got {path!r}")
    exclusive, binary = _parse_mode(mode)
    if binary:
        for name, value in (("encoding", encoding), ("errors", errors), ("newline", newline)):
            if value is not None:
                raise ValueError(f"{name} must be None in binary mode {mode!r}, got {value!r}")
    else:
        encoding = _check_encoding(encoding)
        _check_errors(errors)
        if newline not in _NEWLINES:
            raise ValueError(f"newline must be one of {_NEWLINES!r}, got {newline!r}")
    if permissions is not None and (
        isinstance(permissions, bool)
        or not isinstance(permissions, int)
        or not 0 <= permissions <= 0o7777
    ):
        raise ValueError(f"permissions must be an int in [0, 0o7777], got {permissions!r}")
    return _AtomicWriter(
        target,
        mode.replace("x", "w"),
        exclusive=exclusive,
        encoding=encoding,
        errors=errors,
        newline=newline,
        permissions=permissions,
    )


class _AtomicWriter:
    """Strictly private. The context manager behind ``atomic_write``."""

    __slots__ = (
        "_encoding",
        "_errors",
        "_exclusive",
        "_fd",
        "_file",
        "_mode",
        "_newline",
        "_old_mode",
        "_path",
        "_permissions",
        "_tmp",
    )

    def __init__(
        self,
        path: str,
        mode: str,
        *,
        exclusive: bool,
        encoding: str | None,
        errors: str | None,
        newline: str | None,
        permissions: int | None,
    ) -> None:
        self._path = path
        self._mode = mode
        self._exclusive = exclusive
        self._encoding = encoding
        self._errors = errors
        self._newline = newline
        self._permissions = permissions
        self._old_mode: int | None = None
        self._tmp: str | None = None
        self._fd: int | None = None
        self._file: IO[Any] | None = None

    def __enter__(self) -> IO[Any]:
        if self._tmp is not None:
            raise _reentered("atomic_write")
        given = self._path
        # Follow a symlink so that the file it points to is replaced, not the link.
        self._path = target = os.path.realpath(self._path)
        self._old_mode = _file_mode(target, exclusive=self._exclusive)
        # Private while being written unless the result will be world-readable
        # anyway; a new file created with 0o666 gets exactly the umask'd bits
        # (and default ACLs) that `open` would give it.
        private = self._old_mode is not None or self._permissions is not None
        try:
            self._fd, self._tmp = _create_sibling(target, 0o600 if private else 0o666)
        except OSError as error:
            # The error names the hidden temporary file; the user knows the path they gave.
            raise _cannot_write(error, given) from None
        try:
            # closefd=False: the descriptor stays ours whatever `open` does, so
            # it is closed exactly once (by `_commit` or `_discard`), never twice.
            self._file = open(
                self._fd,
                self._mode,
                encoding=self._encoding,
                errors=self._errors,
                newline=self._newline,
                closefd=False,
            )
        except BaseException:
            self._discard(None)
            raise
        return self._file

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._discard(exc)
            return
        try:
            self._commit()
        except BaseException:
            self._discard(None)
            raise

    def _commit(self) -> None:
        file, tmp, fd = self._file, self._tmp, self._fd
        if file is None or tmp is None or fd is None:
            raise RuntimeError("atomic_write: __exit__ called without __enter__")
        if not file.closed:  # else the block closed it: its data reached the OS already
            file.flush()
            file.close()  # leaves the descriptor open (closefd=False)
        _fsync(fd)
        self._fd = None  # closed once, even if close() itself fails
        os.close(fd)
        mode = self._permissions
        if mode is None:
            current = _file_mode(self._path, exclusive=False)
            mode = current if current is not None else self._old_mode
        if mode is not None:
            os.chmod(tmp, mode)
        if self._exclusive:
            _link_no_replace(tmp, self._path)
        else:
            os.replace(tmp, self._path)
        self._tmp = None
        _fsync_dir(os.path.dirname(self._path))

    def _discard(self, exc: BaseException | None) -> None:
        """Close and remove the temporary file; report, never raise, a failure."""
        file, self._file = self._file, None
        fd, self._fd = self._fd, None
        tmp, self._tmp = self._tmp, None
        if file is not None:
            with suppress(Exception):  # the data is being thrown away anyway
                file.close()
        if fd is not None:
            with suppress(OSError):
                os.close(fd)
        if tmp is None:
            return
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError as error:
            what = f"atomic_write could not remove its temporary file {tmp!r}"
            after = f"the file is left on disk; {self._path!r} is unchanged"
            if exc is not None:
                _report(exc, error, what, after, action="remove", path=tmp)
            else:
                error_type, text = error_fields(error)
                logger.warning(
                    "%s: %s; %s",
                    what,
                    describe_error(error),
                    after,
                    extra={
                        "event": "cleanup_failed",
                        "action": "remove",
                        "path": tmp,
                        "error_type": error_type,
                        "error": text,
                    },
                )


def _parse_mode(mode: object) -> tuple[bool, bool]:
    """Return ``(exclusive, binary)`` for a write mode, or raise ``ValueError``."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a write mode such as 'w' or 'wb', got {mode!r}")
    chars = set(mode)
    if (
        len(chars) != len(mode)
        or not chars <= {"w", "x", "b", "t", "+"}
        or len(chars & {"w", "x"}) != 1
        or {"b", "t"} <= chars
    ):
        raise ValueError(
            f"mode must be a write mode: 'w', 'wb', 'x' or 'xb' (with 't' or '+' "
            f"allowed as for open), got {mode!r}"
        )
    return "x" in chars, "b" in chars


def _check_encoding(encoding: object) -> str:
    if encoding is None:
        return "utf-8"
    if not isinstance(encoding, str):
        raise TypeError(f"encoding must be a str or None, got {encoding!r}")
    if encoding != "locale":
        try:
            info = codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"encoding must name a known codec, got {encoding!r}") from None
        # "hex", "rot13", "base64"... are codecs, but not text encodings: `open` refuses them.
        if not getattr(info, "_is_text_encoding", True):
            raise ValueError(f"encoding must name a text encoding, got {encoding!r}")
    return encoding


def _check_errors(errors: object) -> None:
    if errors is None:
        return
    if not isinstance(errors, str):
        raise TypeError(f"errors must be a str or None, got {errors!r}")
    try:
        codecs.lookup_error(errors)
    except LookupError:
        raise ValueError(f"errors must name a known error handler, got {errors!r}") from None


def _file_mode(path: str, *, exclusive: bool) -> int | None:
    """Permission bits of the file at *path*, or ``None`` when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "atomic_write target is a directory", path)
    if exclusive:
        raise FileExistsError(errno.EEXIST, "atomic_write target exists (mode 'x')", path)
    return stat.S_IMODE(st.st_mode)


def _create_sibling(path: str, perms: int) -> tuple[int, str]:
    """Create and open a new, uniquely named file next to *path*."""
    directory, name = os.path.split(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    for _ in range(_NAME_ATTEMPTS):
        tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}{_TMP_SUFFIX}")
        try:
            return os.open(tmp, flags, perms), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", directory)


def _cannot_write(error: OSError, path: str) -> OSError:
    """*error*, of the same type and errno, retold about the *path* the user gave."""
    directory = os.path.dirname(path) or "."
    reason = error.strerror or str(error)
    if isinstance(error, FileNotFoundError):
        reason = f"the directory {directory!r} does not exist"
    explained = type(error)(error.errno, f"atomic_write cannot write {path!r}: {reason}", path)
    return explained


def _link_no_replace(tmp: str, path: str) -> None:
    """Move *tmp* to *path* unless *path* exists (``FileExistsError`` then)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except (OSError, NotImplementedError, AttributeError):
        # No hard links here (FAT, some network shares): check, then replace.
        # Only this fallback has a window in which a new file can be lost.
        if os.path.lexists(path):
            raise FileExistsError(
                errno.EEXIST, "atomic_write target exists (mode 'x')", path
            ) from None
        os.replace(tmp, path)
        return
    _unlink_quietly(tmp)


def _fsync(fd: int) -> None:
    """Flush a file's data to stable storage (``F_FULLFSYNC`` on macOS)."""
    if sys.platform == "darwin":
        import fcntl  # noqa: PLC0415 - only macOS needs it

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError:
            pass
    os.fsync(fd)


def _fsync_dir(directory: str) -> None:
    """Make a rename in *directory* durable; a no-op where that is impossible."""
    if os.name != "posix":  # Windows cannot open a directory as a file
        return
    fd = os.open(directory or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in _FSYNC_DIR_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- #
# database_transaction / async_database_transaction
# --------------------------------------------------------------------------- #


class _Cursor(Protocol):
    def close(self) -> object: ...


_CursorT = TypeVar("_CursorT", bound=_Cursor)
_CursorT_co = TypeVar("_CursorT_co", bound=_Cursor, covariant=True)


class _Connection(Protocol[_CursorT_co]):
    def cursor(self) -> _CursorT_co: ...
    def commit(self) -> object: ...
    def rollback(self) -> object: ...


def database_transaction(conn: _Connection[_CursorT]) -> AbstractContextManager[_CursorT]:
    """Run the block in a transaction on a DB-API 2.0 connection.

    The block gets a new cursor. If it succeeds, the cursor is closed and the
    connection committed. If it raises anything (``KeyboardInterrupt``
    included), the cursor is closed, the connection rolled back and the
    exception propagates unchanged, with its traceback. If the commit itself
    fails, the connection is rolled back and the commit's exception
    propagates. A rollback or cursor close that fails while an exception is
    propagating is logged (logger ``resilient.cleanup``, at ERROR) and added
    to that exception as a note; it never replaces it.

    The manager commits or rolls back whatever is pending on the connection,
    so it does not nest: use savepoints for that. With ``sqlite3``, the
    default (``isolation_level=""``) opens a transaction implicitly before
    the first INSERT, UPDATE, DELETE or REPLACE, so statements before it (a
    CREATE TABLE, say) commit at once; with ``isolation_level=None`` every
    statement commits at once unless the block runs ``BEGIN`` itself. On
    Python 3.12+, ``autocommit=False`` makes every statement transactional.

    Args:
        conn: an open connection: anything with ``cursor()``, ``commit()``
            and ``rollback()``.

    Returns:
        A context manager whose ``with`` target is the cursor.

    Raises:
        TypeError: *conn* lacks ``cursor``, ``commit`` or ``rollback``.
    """
    _check_connection(conn)
    return _Transaction(conn)


def async_database_transaction(conn: Any) -> AbstractAsyncContextManager[Any]:
    """``async with`` twin of ``database_transaction`` for async drivers.

    Each of ``conn.cursor()``, ``conn.commit()``, ``conn.rollback()`` and
    ``cursor.close()`` may return a value or an awaitable; awaitables are
    awaited. That covers drivers whose methods are all coroutines
    (aiosqlite), those whose ``cursor()`` is plain but whose other methods
    are coroutines (psycopg's ``AsyncConnection``), and plain DB-API
    connections. The guarantees are those of ``database_transaction``; if the
    block is cancelled, the rollback is still awaited before
    ``CancelledError`` propagates.

    Args:
        conn: an open connection with ``cursor``, ``commit`` and ``rollback``.

    Returns:
        An async context manager whose target is the cursor.

    Raises:
        TypeError: *conn* lacks ``cursor``, ``commit`` or ``rollback``.
    """
    _check_connection(conn)
    return _AsyncTransaction(conn)


class _Transaction:
    """Strictly private. The context manager behind ``database_transaction``."""

    __slots__ = ("_active", "_conn", "_cursor")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._cursor: Any = None
        self._active = False

    def __enter__(self) -> Any:
        if self._active:
            raise _reentered("database_transaction")
        self._active = True
        try:
            self._cursor = self._conn.cursor()
        except BaseException:
            self._active = False
            raise
        return self._cursor

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cursor, self._cursor = self._cursor, None
        self._active = False
        if exc is not None:
            try:
                cursor.close()
            except Exception as error:
                _report(exc, error, *_CLOSE_FAILED, action="close")
            try:
                self._conn.rollback()
            except Exception as error:
                _report(exc, error, *_ROLLBACK_FAILED, action="rollback")
            return
        try:
            cursor.close()
            self._conn.commit()
        except BaseException as error:
            try:
                self._conn.rollback()
            except Exception as rollback_error:
                _report(error, rollback_error, *_ROLLBACK_FAILED, action="rollback")
            raise


class _AsyncTransaction:
    """Strictly private. The context manager behind ``async_database_transaction``."""

    __slots__ = ("_active", "_conn", "_cursor")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._cursor: Any = None
        self._active = False

    async def __aenter__(self) -> Any:
        if self._active:
            raise _reentered("async_database_transaction")
        self._active = True
        try:
            self._cursor = await _maybe_await(self._conn.cursor())
        except BaseException:
            self._active = False
            raise
        return self._cursor

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cursor, self._cursor = self._cursor, None
        self._active = False
        if exc is not None:
            try:
                await _maybe_await(cursor.close())
            except Exception as error:
                _report(exc, error, *_CLOSE_FAILED, action="close")
            try:
                await _maybe_await(self._conn.rollback())
            except Exception as error:
                _report(exc, error, *_ROLLBACK_FAILED, action="rollback")
            return
        try:
            await _maybe_await(cursor.close())
            await _maybe_await(self._conn.commit())
        except BaseException as error:
            try:
                await _maybe_await(self._conn.rollback())
            except Exception as rollback_error:
                _report(error, rollback_error, *_ROLLBACK_FAILED, action="rollback")
            raise


def _check_connection(conn: object) -> None:
    missing = [m for m in ("cursor", "commit", "rollback") if not callable(getattr(conn, m, None))]
    if missing:
        raise TypeError(
            f"conn must be a DB-API 2.0 connection with cursor(), commit() and rollback(), "
            f"got {conn!r} (missing {', '.join(missing)})"
        )


async def _maybe_await(value: Any) -> Any:
    """Return *value*, awaited first when it is awaitable."""
    import inspect  # noqa: PLC0415 - `import resilient` stays light; asyncio loads it anyway

    if inspect.isawaitable(value):
        return await value
    return value


# --------------------------------------------------------------------------- #
# shared helpers
# --------------------------------------------------------------------------- #


_CLOSE_FAILED = (
    "database_transaction could not close its cursor",
    "the transaction is rolled back next",
)
_ROLLBACK_FAILED = (
    "database_transaction could not roll back",
    "the connection may hold the transaction open until it is closed",
)


def _report(
    original: BaseException, error: Exception, what: str, after: str, **fields: str
) -> None:
    """Log a cleanup failure and note it on the exception that is propagating.

    *what* says what failed and *after* what it leaves behind. Never raises
    (for an ``Exception``): it runs while *original* propagates and must not
    replace it, whatever ``str(error)``, a logging handler or
    ``original.__notes__`` do.
    """
    with suppress(Exception):
        if logger.isEnabledFor(logging.ERROR):
            error_type, text = error_fields(error)
            log_with_traceback(
                logger,
                logging.ERROR,
                "%s: %s; %s; the %s raised in the block propagates",
                what,
                describe_error(error),
                after,
                type(original).__name__,
                error=error,
                extra={
                    "event": "cleanup_failed",
                    **fields,
                    "error_type": error_type,
                    "error": text,
                    "original_error_type": type_name(type(original)),
                },
            )
    with suppress(Exception):
        add_note(original, f"resilient: {what} during cleanup: {describe_error(error)}")


def _reentered(name: str) -> RuntimeError:
    return RuntimeError(
        f"{name}: this context manager is already in use; it cannot be entered again "
        f"until its block ends (call {name}() once per with block)"
    )


def _check_path(name: str, value: Any) -> str:
    path = cast("str | bytes | os.PathLike[str] | os.PathLike[bytes]", value)
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{name} must be a str or os.PathLike, got {value!r}") from None


def _check_name_part(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r}")
    if os.sep in value or (os.altsep and os.altsep in value):
        raise ValueError(f"{name} must not contain a path separator, got {value!r}")
    return value


def _unlink_quietly(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)
