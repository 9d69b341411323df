"""Specification of resilient.cleanup: temp files, atomic writes, transactions."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilient import cleanup
from resilient.cleanup import (
    async_database_transaction,
    async_temp_file,
    atomic_write,
    database_transaction,
    safe_temp_file,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and signals")


class Boom(Exception):
    """The exception the bodies under test raise."""


def _boom(exc: BaseException) -> None:
    raise exc


def _notes(exc: BaseException) -> list[str]:
    """PEP 678 notes, read the same way on Python 3.10."""
    return list(getattr(exc, "__notes__", []))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _no_cleanup_frames(info: pytest.ExceptionInfo[BaseException]) -> bool:
    return not any(Path(str(entry.path)).name == "cleanup.py" for entry in info.traceback)


@contextlib.contextmanager
def _umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- #
# safe_temp_file
# --------------------------------------------------------------------------- #


@posix_only
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_temp_file_exists_empty_and_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """The yielded path is an existing empty file with mode 0600."""
    with _umask(umask), safe_temp_file(dir=tmp_path) as path:
        assert path.is_file()
        assert path.stat().st_size == 0
        assert _mode(path) == 0o600


def test_temp_file_is_absolute_path_with_prefix_and_suffix(tmp_path: Path) -> None:
    """The name has the prefix and suffix asked for, in the directory asked for."""
    with safe_temp_file(suffix=".json", prefix="job-", dir=str(tmp_path)) as path:
        assert isinstance(path, Path)
        assert path.is_absolute()
        assert path.parent == tmp_path
        assert path.name.startswith("job-")
        assert path.name.endswith(".json")


def test_temp_file_defaults_to_system_temp_dir() -> None:
    """Without dir, the file lives in tempfile.gettempdir()."""
    with safe_temp_file() as path:
        assert path.parent == Path(tempfile.gettempdir())
    assert not path.exists()


def test_temp_file_descriptor_is_closed_and_path_usable(tmp_path: Path) -> None:
    """The body can write and read the file by path."""
    with safe_temp_file(dir=tmp_path) as path:
        path.write_text("data", encoding="utf-8")
        assert path.read_text(encoding="utf-8") == "data"


def test_temp_file_removed_on_success(tmp_path: Path) -> None:
    """No error, no file."""
    with safe_temp_file(dir=tmp_path) as path:
        path.write_bytes(b"x")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_temp_file_removed_when_body_raises(tmp_path: Path) -> None:
    """The file is removed and the body's exception propagates as raised."""
    error = Boom("body failed")
    with pytest.raises(Boom) as info, safe_temp_file(dir=tmp_path) as path:
        _boom(error)
    assert info.value is error
    assert _no_cleanup_frames(info)
    assert not path.exists()


def test_temp_file_removed_on_keyboard_interrupt(tmp_path: Path) -> None:
    """A BaseException removes the file too, and still propagates."""
    with pytest.raises(KeyboardInterrupt), safe_temp_file(dir=tmp_path) as path:
        raise KeyboardInterrupt
    assert not path.exists()


def test_temp_file_removed_by_body_is_not_an_error(tmp_path: Path) -> None:
    """A body that deletes the file itself exits cleanly."""
    with safe_temp_file(dir=tmp_path) as path:
        path.unlink()
    assert list(tmp_path.iterdir()) == []


def test_temp_file_renamed_by_body_is_kept(tmp_path: Path) -> None:
    """A body that moves the file away keeps it: build-then-publish works."""
    final = tmp_path / "final.txt"
    with safe_temp_file(dir=tmp_path) as path:
        path.write_text("done", encoding="utf-8")
        os.replace(path, final)
    assert final.read_text(encoding="utf-8") == "done"


def test_temp_file_removal_failure_never_hides_body_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When removal fails while the body's exception propagates, that exception wins."""
    error = Boom("body failed")

    def refuse(path: Any) -> None:
        raise PermissionError(13, "denied", str(path))

    def body() -> None:
        with safe_temp_file(dir=tmp_path):
            monkeypatch.setattr(os, "unlink", refuse)
            _boom(error)

    with pytest.raises(Boom) as info:
        body()
    monkeypatch.undo()
    assert info.value is error
    assert any("could not remove its temporary file" in note for note in _notes(info.value))
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith("safe_temp_file could not remove its temporary file ")
    assert message.endswith("; the file is left on disk; the Boom raised in the block propagates")


def test_temp_file_removal_failure_after_success_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When nothing else went wrong, a file that cannot be removed is an error."""

    def refuse(path: Any) -> None:
        raise PermissionError(13, "denied", str(path))

    with pytest.raises(PermissionError), safe_temp_file(dir=tmp_path):
        monkeypatch.setattr(os, "unlink", refuse)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"suffix": 1}, TypeError, "suffix must be a str, got 1"),
        ({"prefix": None}, TypeError, "prefix must be a str, got None"),
        ({"prefix": "a/b"}, ValueError, "prefix must not contain a path separator, got 'a/b'"),
        ({"dir": 3}, TypeError, "dir must be a str or os.PathLike, got 3"),
    ],
)
def test_temp_file_bad_arguments_name_parameter_and_value(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    """Bad input fails at the call, naming the parameter and the value."""
    with pytest.raises(error) as info:
        safe_temp_file(**kwargs)
    assert words in str(info.value)


# --------------------------------------------------------------------------- #
# atomic_write
# --------------------------------------------------------------------------- #


def test_atomic_write_replaces_text_content(tmp_path: Path) -> None:
    """On success the file holds exactly what the body wrote."""
    target = tmp_path / "config.txt"
    target.write_text("old", encoding="utf-8")
    with atomic_write(target) as f:
        f.write("new ✓")
    assert target.read_bytes() == "new ✓".encode()
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_replaces_binary_content(tmp_path: Path) -> None:
    """Mode "wb" yields a binary file."""
    target = tmp_path / "blob.bin"
    target.write_bytes(b"old")
    with atomic_write(target, "wb") as f:
        f.write(b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"


def test_atomic_write_creates_new_file(tmp_path: Path) -> None:
    """A missing target is created."""
    target = tmp_path / "new.txt"
    with atomic_write(str(target)) as f:
        f.write("hello")
    assert target.read_text(encoding="utf-8") == "hello"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_target_unchanged_until_exit(tmp_path: Path) -> None:
    """While the body runs, readers of the target see the old content."""
    target = tmp_path / "data.txt"
    target.write_text("old", encoding="utf-8")
    with atomic_write(target) as f:
        f.write("new")
        f.flush()
        assert target.read_text(encoding="utf-8") == "old"


def test_atomic_write_writes_sibling_temp_file(tmp_path: Path) -> None:
    """The temporary file lives next to the target, hidden, named after it."""
    target = tmp_path / "data.txt"
    with atomic_write(target):
        (tmp,) = tmp_path.iterdir()
        assert tmp.name.startswith(".data.txt.")
        assert tmp.name.endswith(".tmp")


def test_atomic_write_exception_leaves_old_content_and_no_temp(tmp_path: Path) -> None:
    """A body that raises leaves the target byte-for-byte untouched and no temp file."""
    target = tmp_path / "data.bin"
    target.write_bytes(b"old\r\ncontent")
    error = Boom("crash mid-write")

    def body() -> None:
        with atomic_write(target, "wb") as f:
            f.write(b"partial")
            f.flush()
            _boom(error)

    with pytest.raises(Boom) as info:
        body()
    assert info.value is error
    assert _no_cleanup_frames(info)
    assert _notes(info.value) == []
    assert target.read_bytes() == b"old\r\ncontent"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_keyboard_interrupt_leaves_old_content(tmp_path: Path) -> None:
    """A BaseException mid-write is handled like any failure, then propagates."""
    target = tmp_path / "data.txt"
    target.write_text("old", encoding="utf-8")

    def body() -> None:
        with atomic_write(target) as f:
            f.write("partial")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        body()
    assert target.read_text(encoding="utf-8") == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_exception_on_new_file_creates_nothing(tmp_path: Path) -> None:
    """A failed write of a new file leaves no file at all."""

    def body() -> None:
        with atomic_write(tmp_path / "new.txt") as f:
            f.write("partial")
            raise Boom

    with pytest.raises(Boom):
        body()
    assert list(tmp_path.iterdir()) == []


_SIGKILL_CHILD = """
import sys
from resilient.cleanup import atomic_write
with atomic_write(sys.argv[1], "wb") as f:
    f.write(b"torn" * 100_000)
    f.flush()
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    sys.stdin.read()  # blocks until the parent closes stdin, which it never does
"""


@posix_only
def test_atomic_write_sigkill_mid_write_leaves_old_content(tmp_path: Path) -> None:
    """A process killed mid-write leaves the old target; only a temp file is left over."""
    target = tmp_path / "state.bin"
    old = b"old state " * 1000
    target.write_bytes(old)
    with subprocess.Popen(
        [sys.executable, "-c", _SIGKILL_CHILD, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    assert target.read_bytes() == old
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p != target)
    assert len(leftovers) == 1  # SIGKILL allows no cleanup: documented
    assert leftovers[0].startswith(".state.bin.")
    assert leftovers[0].endswith(".tmp")


@posix_only
@pytest.mark.parametrize("perms", [0o600, 0o640, 0o755, 0o444])
def test_atomic_write_keeps_existing_permissions(tmp_path: Path, perms: int) -> None:
    """The new file has the old file's permission bits."""
    target = tmp_path / "data.txt"
    target.write_text("old", encoding="utf-8")
    target.chmod(perms)
    with atomic_write(target) as f:
        f.write("new")
    assert _mode(target) == perms


@posix_only
@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_write_new_file_gets_umask_default(
    tmp_path: Path, umask: int, expected: int
) -> None:
    """A new file gets 0o666 & ~umask, as open() would give it."""
    target = tmp_path / "new.txt"
    with _umask(umask), atomic_write(target) as f:
        f.write("x")
    assert _mode(target) == expected


@posix_only
def test_atomic_write_permissions_argument_wins(tmp_path: Path) -> None:
    """permissions= overrides both the old bits and the umask."""
    target = tmp_path / "secret.txt"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o644)
    with atomic_write(target, permissions=0o600) as f:
        f.write("new")
    assert _mode(target) == 0o600


@posix_only
def test_atomic_write_temp_file_private_while_replacing_existing(tmp_path: Path) -> None:
    """Replacing a private file never exposes the new content through a readable temp."""
    target = tmp_path / "secret.txt"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o600)
    with _umask(0o000), atomic_write(target) as f:
        (tmp,) = (p for p in tmp_path.iterdir() if p != target)
        assert _mode(tmp) == 0o600
        f.write("new")


def test_atomic_write_fsyncs_file_before_replace_then_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data is fsynced while the target is still old; the directory after the replace."""
    target = tmp_path / "data.txt"
    target.write_text("old", encoding="utf-8")
    seen: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        seen.append((kind, target.read_text(encoding="utf-8")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with atomic_write(target) as f:
        f.write("new")
    expected = [("file", "old"), ("dir", "new")] if os.name == "posix" else [("file", "old")]
    assert seen == expected


def test_atomic_write_failed_fsync_leaves_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while committing (disk full) leaves the target and no temp file."""
    target = tmp_path / "data.txt"
    target.write_text("old", encoding="utf-8")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"), atomic_write(target) as f:
        f.write("new")
    assert target.read_text(encoding="utf-8") == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_body_closing_file_still_commits(tmp_path: Path) -> None:
    """A body that closes the file itself still gets an atomic, fsynced replace."""
    target = tmp_path / "data.txt"
    with atomic_write(target) as f:
        f.write("closed early")
        f.close()
    assert target.read_text(encoding="utf-8") == "closed early"
    assert list(tmp_path.iterdir()) == [target]


@posix_only
def test_atomic_write_follows_symlink(tmp_path: Path) -> None:
    """Writing through a symlink replaces the file it points to and keeps the link."""
    real = tmp_path / "real.txt"
    real.write_text("old", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with atomic_write(link) as f:
        f.write("new")
    assert link.is_symlink()
    assert real.read_text(encoding="utf-8") == "new"


def test_atomic_write_text_defaults_to_utf8_and_honours_newline(tmp_path: Path) -> None:
    """Text mode encodes as UTF-8 by default; newline= is applied as by open()."""
    target = tmp_path / "data.txt"
    with atomic_write(target, newline="\r\n") as f:
        f.write("é\n")
    assert target.read_bytes() == "é\r\n".encode()


def test_atomic_write_encoding_argument(tmp_path: Path) -> None:
    """encoding= picks the codec."""
    target = tmp_path / "data.txt"
    with atomic_write(target, encoding="latin-1") as f:
        f.write("é")
    assert target.read_bytes() == b"\xe9"


def test_atomic_write_exclusive_creates_missing_file(tmp_path: Path) -> None:
    """Mode "x" writes a file that did not exist."""
    target = tmp_path / "once.txt"
    with atomic_write(target, "x") as f:
        f.write("first")
    assert target.read_text(encoding="utf-8") == "first"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_exclusive_refuses_existing_file(tmp_path: Path) -> None:
    """Mode "x" on an existing file raises FileExistsError before the body runs."""
    target = tmp_path / "once.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(FileExistsError), atomic_write(target, "xb"):
        pytest.fail("the body must not run")
    assert target.read_text(encoding="utf-8") == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_exclusive_never_overwrites_file_created_meanwhile(tmp_path: Path) -> None:
    """Mode "x" fails at commit if someone else created the file during the body."""
    target = tmp_path / "once.txt"

    def body() -> None:
        with atomic_write(target, "x") as f:
            f.write("mine")
            target.write_text("theirs", encoding="utf-8")

    with pytest.raises(FileExistsError):
        body()
    assert target.read_text(encoding="utf-8") == "theirs"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_directory_target_fails_before_body(tmp_path: Path) -> None:
    """A directory at path is refused at the start, leaving nothing behind."""
    with pytest.raises(IsADirectoryError), atomic_write(tmp_path):
        pytest.fail("the body must not run")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_missing_directory_raises(tmp_path: Path) -> None:
    """A target in a directory that does not exist raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "nope" / "f.txt"):
        pytest.fail("the body must not run")


@pytest.mark.parametrize("mode", ["r", "a", "ab", "r+", "rw", "wa", "wbt", "ww", "", "w b", "U"])
def test_atomic_write_bad_mode_raises_at_call_before_anything_created(
    tmp_path: Path, mode: str
) -> None:
    """A mode that is not a write mode is a ValueError naming it, raised by the call itself."""
    with pytest.raises(ValueError, match="mode must be a write mode") as info:
        atomic_write(tmp_path / "f.txt", mode)
    assert repr(mode) in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["w", "wt", "wb", "bw", "x", "xb", "w+", "wb+", "w+b"])
def test_atomic_write_accepts_write_modes(tmp_path: Path, mode: str) -> None:
    """Every w/x mode, with t, b or + as open() allows them, is accepted."""
    target = tmp_path / "f"
    with atomic_write(target, mode) as f:
        f.write(b"ok" if "b" in mode else "ok")
    assert target.read_bytes() == b"ok"


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"mode": "wb", "encoding": "utf-8"}, ValueError, "encoding must be None in binary mode"),
        ({"mode": "wb", "newline": ""}, ValueError, "newline must be None in binary mode"),
        ({"mode": "wb", "errors": "strict"}, ValueError, "errors must be None in binary mode"),
        ({"encoding": "no-such-codec"}, ValueError, "encoding must name a known codec"),
        ({"encoding": "hex"}, ValueError, "encoding must name a text encoding, got 'hex'"),
        ({"encoding": "rot13"}, ValueError, "encoding must name a text encoding, got 'rot13'"),
        ({"encoding": "base64"}, ValueError, "encoding must name a text encoding, got 'base64'"),
        ({"encoding": 8}, TypeError, "encoding must be a str or None, got 8"),
        ({"errors": "nope"}, ValueError, "errors must name a known error handler, got 'nope'"),
        ({"newline": "\t"}, ValueError, "newline must be one of"),
        ({"permissions": -1}, ValueError, "permissions must be an int in [0, 0o7777], got -1"),
        ({"permissions": 0o10000}, ValueError, "got 4096"),
        ({"permissions": True}, ValueError, "got True"),
        ({"mode": 1}, TypeError, "mode must be a write mode such as 'w' or 'wb', got 1"),
    ],
)
def test_atomic_write_bad_arguments_name_parameter_and_value(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    """Bad input fails at the call, naming the parameter and the value, creating nothing."""
    with pytest.raises(error) as info:
        atomic_write(tmp_path / "f.txt", **kwargs)
    assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _open_fds() -> set[str] | None:
    """The process's open descriptors of files, where the OS lists them.

    Sockets, pipes and event descriptors are left out: other threads of a
    test worker (servers and event loops other tests started) open and close
    those at any moment, and a temporary file is none of them.
    """
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return None
    files = set()
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:  # closed meanwhile (or the listing's own descriptor)
            continue
        if not target.startswith(("socket:", "pipe:", "anon_inode:")):
            files.add(fd)
    return files


@pytest.fixture
def no_collection() -> Iterator[None]:
    """No garbage collection while a test compares the process's descriptors.

    An object another test left to the collector (a client socket) closes its
    descriptor whenever a collection happens to run; seen under xdist on a busy
    machine, one such close made a descriptor vanish between two listings.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_collection")
def test_atomic_write_open_failure_propagates_and_leaves_nothing(tmp_path: Path) -> None:
    """When `open` fails at enter (after closing the fd itself), its own error propagates.

    Regression: the descriptor `open` had already closed was closed again, and
    the ``OSError`` (EBADF) replaced the real error and left the temporary file.
    The call validates the encoding, so the private writer is used to reach
    `open` with a codec it refuses.
    """
    target = tmp_path / "out.txt"
    target.write_text("old", encoding="utf-8")
    writer = cleanup._AtomicWriter(
        str(target),
        "w",
        exclusive=False,
        encoding="hex",
        errors=None,
        newline=None,
        permissions=None,
    )
    before = _open_fds()
    with pytest.raises(LookupError), writer:
        pytest.fail("the block must not run")
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_text(encoding="utf-8") == "old"
    assert _open_fds() == before


@pytest.mark.usefixtures("no_collection")
def test_atomic_write_open_failure_closes_descriptor_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether or not `open` closed the descriptor before failing, nothing is closed twice."""
    real_open = open

    def failing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("closefd", True):  # what `open` does with an fd it owns
            os.close(file)
        raise Boom("open failed")

    monkeypatch.setattr(cleanup, "open", failing_open, raising=False)
    target = tmp_path / "out.txt"
    before = _open_fds()
    with pytest.raises(Boom, match="open failed"), atomic_write(target):
        pytest.fail("the block must not run")
    monkeypatch.setattr(cleanup, "open", real_open, raising=False)
    assert list(tmp_path.iterdir()) == []
    assert _open_fds() == before


@pytest.mark.usefixtures("no_collection")
@pytest.mark.parametrize("how", ["success", "body closes", "body raises", "commit fails"])
def test_atomic_write_leaks_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The temporary file's descriptor is closed on every path."""
    if _open_fds() is None:
        pytest.skip("needs /proc/self/fd")
    target = tmp_path / "out.txt"
    if how == "commit fails":

        def failing_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(cleanup, "_fsync", failing_fsync)
    before = _open_fds()
    with contextlib.suppress(Boom, OSError), atomic_write(target) as f:
        f.write("new")
        if how == "body closes":
            f.close()
        if how == "body raises":
            raise Boom
    assert _open_fds() == before
    assert [p.name for p in tmp_path.iterdir()] == (
        ["out.txt"] if how in ("success", "body closes") else []
    )


def test_atomic_write_failed_directory_fsync_raises_with_new_content_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As documented: the directory fsync runs after the replace, so its error comes late."""

    def failing_fsync_dir(directory: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(cleanup, "_fsync_dir", failing_fsync_dir)
    target = tmp_path / "data.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(OSError, match="Input/output error"), atomic_write(target) as f:
        f.write("new")
    assert target.read_text(encoding="utf-8") == "new"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("path", [None, 3, ""])
def test_atomic_write_bad_path(path: Any) -> None:
    """A path that is not a path, or is empty, is refused at the call."""
    with pytest.raises((TypeError, ValueError), match="path must"):
        atomic_write(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    old=st.none() | st.binary(max_size=2048),
    new=st.binary(max_size=2048),
    fails=st.booleans(),
)
def test_atomic_write_ends_exactly_old_or_exactly_new(
    old: bytes | None, new: bytes, fails: bool
) -> None:
    """Whatever the contents, the file ends exactly new on success, exactly old on failure."""
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "f.bin"
        if old is not None:
            target.write_bytes(old)
        with contextlib.suppress(Boom), atomic_write(target, "wb") as f:
            f.write(new)
            if fails:
                raise Boom
        expected = old if fails else new
        if expected is None:
            assert list(Path(directory).iterdir()) == []
        else:
            assert target.read_bytes() == expected
            assert list(Path(directory).iterdir()) == [target]


# --------------------------------------------------------------------------- #
# database_transaction with a real SQLite database
# --------------------------------------------------------------------------- #


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, Path]]:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (name TEXT PRIMARY KEY, qty INTEGER)")
    conn.execute("INSERT INTO items VALUES ('apple', 1), ('pear', 2)")
    conn.commit()
    yield conn, path
    conn.close()


def _rows(path: Path) -> list[tuple[str, int]]:
    """The table as a second connection sees it."""
    with contextlib.closing(sqlite3.connect(path)) as other:
        return other.execute("SELECT name, qty FROM items ORDER BY name").fetchall()


def test_transaction_commits_on_success(db: tuple[sqlite3.Connection, Path]) -> None:
    """Changes are committed: another connection sees them."""
    conn, path = db
    with database_transaction(conn) as cur:
        cur.execute("INSERT INTO items VALUES ('plum', 3)")
        cur.execute("UPDATE items SET qty = 10 WHERE name = 'apple'")
    assert _rows(path) == [("apple", 10), ("pear", 2), ("plum", 3)]


def test_failing_transaction_leaves_table_unchanged(db: tuple[sqlite3.Connection, Path]) -> None:
    """A body that raises after several writes leaves the table as it was."""
    conn, path = db
    error = Boom("midway")

    def body() -> None:
        with database_transaction(conn) as cur:
            cur.execute("INSERT INTO items VALUES ('plum', 3)")
            cur.execute("DELETE FROM items WHERE name = 'pear'")
            _boom(error)

    with pytest.raises(Boom) as info:
        body()
    assert info.value is error
    assert _no_cleanup_frames(info)
    assert _rows(path) == [("apple", 1), ("pear", 2)]
    assert not conn.in_transaction


def test_database_error_in_body_rolls_back_earlier_statements(
    db: tuple[sqlite3.Connection, Path],
) -> None:
    """A constraint violation inside the block undoes the statements before it."""
    conn, path = db

    def body() -> None:
        with database_transaction(conn) as cur:
            cur.execute("INSERT INTO items VALUES ('plum', 3)")
            cur.execute("INSERT INTO items VALUES ('apple', 9)")

    with pytest.raises(sqlite3.IntegrityError):
        body()
    assert _rows(path) == [("apple", 1), ("pear", 2)]


def test_keyboard_interrupt_rolls_back(db: tuple[sqlite3.Connection, Path]) -> None:
    """Ctrl-C inside the block rolls back, then propagates."""
    conn, path = db

    def body() -> None:
        with database_transaction(conn) as cur:
            cur.execute("INSERT INTO items VALUES ('plum', 3)")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        body()
    assert _rows(path) == [("apple", 1), ("pear", 2)]


@pytest.mark.parametrize("fails", [False, True])
def test_sqlite_cursor_closed_after_block(db: tuple[sqlite3.Connection, Path], fails: bool) -> None:
    """The cursor is closed whether the block succeeded or raised."""
    conn, _ = db
    with contextlib.suppress(Boom), database_transaction(conn) as cur:
        cur.execute("SELECT 1")
        if fails:
            raise Boom
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        cur.execute("SELECT 1")


def test_sqlite_autocommit_mode_needs_explicit_begin(tmp_path: Path) -> None:
    """With isolation_level=None, a block that starts with BEGIN is rolled back as a whole."""
    path = tmp_path / "auto.db"

    def body(conn: sqlite3.Connection) -> None:
        with database_transaction(conn) as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO items VALUES ('plum', 3)")
            raise Boom

    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE items (name TEXT PRIMARY KEY, qty INTEGER)")
        with pytest.raises(Boom):
            body(conn)
    assert _rows(path) == []


# --------------------------------------------------------------------------- #
# database_transaction with a fake DB-API connection
# --------------------------------------------------------------------------- #


class FakeCursor:
    def __init__(self, log: list[str], fail_close: bool) -> None:
        self.log = log
        self.fail_close = fail_close
        self.closed = False

    def close(self) -> None:
        self.log.append("close")
        self.closed = True
        if self.fail_close:
            raise RuntimeError("close broke")


class FakeConnection:
    """A DB-API connection whose steps can be told to fail."""

    def __init__(
        self, *, fail_commit: bool = False, fail_rollback: bool = False, fail_close: bool = False
    ) -> None:
        self.log: list[str] = []
        self.fail_commit = fail_commit
        self.fail_rollback = fail_rollback
        self.fail_close = fail_close
        self.cursors: list[FakeCursor] = []

    def cursor(self) -> FakeCursor:
        self.log.append("cursor")
        self.cursors.append(FakeCursor(self.log, self.fail_close))
        return self.cursors[-1]

    def commit(self) -> None:
        self.log.append("commit")
        if self.fail_commit:
            raise ConnectionError("commit lost")

    def rollback(self) -> None:
        self.log.append("rollback")
        if self.fail_rollback:
            raise ConnectionError("connection gone")


def test_fake_success_closes_cursor_then_commits() -> None:
    """Success: cursor closed, then commit; no rollback."""
    conn = FakeConnection()
    with database_transaction(conn) as cur:
        assert cur is conn.cursors[0]
    assert conn.log == ["cursor", "close", "commit"]


def test_fake_failure_closes_cursor_then_rolls_back() -> None:
    """Failure: cursor closed, then rollback; no commit."""
    conn = FakeConnection()
    with pytest.raises(Boom), database_transaction(conn):
        raise Boom
    assert conn.log == ["cursor", "close", "rollback"]


def test_failing_rollback_does_not_hide_original() -> None:
    """The body's exception propagates unchanged, with a note naming the rollback failure."""
    conn = FakeConnection(fail_rollback=True)
    error = Boom("original")
    with pytest.raises(Boom) as info, database_transaction(conn):
        _boom(error)
    assert info.value is error
    assert _no_cleanup_frames(info)
    assert _notes(info.value) == [
        "resilient: database_transaction could not roll back during cleanup: ConnectionError: connection gone"
    ]


def test_failing_rollback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A failing rollback is logged at ERROR on resilient.cleanup with structured fields."""
    conn = FakeConnection(fail_rollback=True)
    with (
        caplog.at_level(logging.ERROR, logger="resilient.cleanup"),
        pytest.raises(Boom),
        database_transaction(conn),
    ):
        raise Boom("original")
    (record,) = caplog.records
    assert record.name == "resilient.cleanup"
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "database_transaction could not roll back: ConnectionError: connection gone; the "
        "connection may hold the transaction open until it is closed; the Boom raised in the "
        "block propagates"
    )
    assert record.__dict__["action"] == "rollback"
    assert record.__dict__["error_type"] == "ConnectionError"
    assert record.__dict__["error"] == "connection gone"
    assert record.__dict__["original_error_type"] == f"{__name__}.Boom"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionError)


class UnprintableError(ConnectionError):
    """A driver error whose ``str()`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("str() of the driver error failed")


class UnprintableRollbackConnection(FakeConnection):
    def rollback(self) -> None:
        self.log.append("rollback")
        raise UnprintableError


def test_unprintable_rollback_error_does_not_hide_original(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rollback error whose str() raises is still reported, never raised over the original."""
    conn = UnprintableRollbackConnection()
    error = Boom("original")
    with (
        caplog.at_level(logging.ERROR, logger="resilient.cleanup"),
        pytest.raises(Boom) as info,
        database_transaction(conn),
    ):
        raise error
    assert info.value is error
    assert conn.log == ["cursor", "close", "rollback"]
    assert _notes(error) == [
        "resilient: database_transaction could not roll back during cleanup: UnprintableError: <UnprintableError (str() failed)>"
    ]
    (record,) = caplog.records
    assert record.__dict__["error_type"] == f"{__name__}.UnprintableError"
    assert record.__dict__["error"] == "<UnprintableError (str() failed)>"


def test_unprintable_rollback_error_after_failed_commit_keeps_commit_error() -> None:
    """Same when the rollback follows a failed commit: the commit's error propagates."""

    class Conn(UnprintableRollbackConnection):
        def commit(self) -> None:
            self.log.append("commit")
            raise ConnectionError("commit lost")

    with pytest.raises(ConnectionError, match="commit lost") as info, database_transaction(Conn()):
        pass
    assert type(info.value) is ConnectionError
    assert _notes(info.value) == [
        "resilient: database_transaction could not roll back during cleanup: UnprintableError: <UnprintableError (str() failed)>"
    ]


def test_report_survives_a_raising_log_filter_and_bad_notes() -> None:
    """Neither a logging filter that raises nor a non-list __notes__ replaces the original."""

    def bad_filter(record: logging.LogRecord) -> bool:
        raise RuntimeError("filter broke")

    log = logging.getLogger("resilient.cleanup")
    log.addFilter(bad_filter)
    error = Boom("original")
    error.__notes__ = "not a list"  # type: ignore[attr-defined]
    try:
        with pytest.raises(Boom) as info, database_transaction(FakeConnection(fail_rollback=True)):
            raise error
    finally:
        log.removeFilter(bad_filter)
    assert info.value is error


def test_failing_cursor_close_does_not_hide_original_and_still_rolls_back() -> None:
    """A cursor that fails to close is reported; the rollback still runs."""
    conn = FakeConnection(fail_close=True)
    error = Boom("original")
    with pytest.raises(Boom) as info, database_transaction(conn):
        raise error
    assert info.value is error
    assert conn.log == ["cursor", "close", "rollback"]
    assert _notes(info.value) == [
        "resilient: database_transaction could not close its cursor during cleanup: RuntimeError: close broke"
    ]


def test_failing_commit_rolls_back_and_raises_commit_error() -> None:
    """A commit that fails is followed by a rollback, and its own error propagates."""
    conn = FakeConnection(fail_commit=True)
    with pytest.raises(ConnectionError, match="commit lost"), database_transaction(conn):
        pass
    assert conn.log == ["cursor", "close", "commit", "rollback"]


def test_failing_cursor_close_on_success_rolls_back_and_raises() -> None:
    """Nothing is committed when closing the cursor fails."""
    conn = FakeConnection(fail_close=True)
    with pytest.raises(RuntimeError, match="close broke"), database_transaction(conn):
        pass
    assert conn.log == ["cursor", "close", "rollback"]


@pytest.mark.parametrize(
    ("options", "raises"),
    [
        ({}, False),
        ({}, True),
        ({"fail_commit": True}, False),
        ({"fail_rollback": True}, True),
        ({"fail_commit": True, "fail_rollback": True}, False),
    ],
)
def test_fake_cursor_closed_in_all_cases(options: dict[str, bool], raises: bool) -> None:
    """Whatever fails, the cursor is closed exactly once."""
    conn = FakeConnection(**options)
    with contextlib.suppress(Boom, ConnectionError), database_transaction(conn):
        if raises:
            raise Boom
    assert conn.cursors[0].closed
    assert conn.log.count("close") == 1


def test_failing_cursor_creation_propagates_without_commit_or_rollback() -> None:
    """If no cursor can be made, the block does not run and nothing is committed."""

    class NoCursor(FakeConnection):
        def cursor(self) -> FakeCursor:
            raise ConnectionError("no cursor")

    conn = NoCursor()
    with pytest.raises(ConnectionError, match="no cursor"), database_transaction(conn):
        pytest.fail("the body must not run")
    assert conn.log == []


@pytest.mark.parametrize("make", [database_transaction, async_database_transaction])
def test_transaction_rejects_non_connection(make: Any) -> None:
    """Something without cursor/commit/rollback is a TypeError naming conn and what is missing."""
    with pytest.raises(TypeError, match=r"conn must be a DB-API 2.0 connection.*missing commit"):
        make(type("Half", (), {"cursor": lambda self: None, "rollback": lambda self: None})())


# --------------------------------------------------------------------------- #
# async twins
# --------------------------------------------------------------------------- #


@posix_only
def test_async_temp_file_exists_with_mode_0600_and_is_removed(tmp_path: Path) -> None:
    """The async twin yields an existing 0600 file and removes it after the block."""

    async def main() -> Path:
        async with async_temp_file(suffix=".txt", dir=tmp_path) as path:
            assert path.is_file()
            assert _mode(path) == 0o600
        return path

    path = asyncio.run(main())
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["raises", "removes"])
def test_async_temp_file_removed_when_body_raises_or_removed_it(tmp_path: Path, how: str) -> None:
    """The async twin cleans up after a failure, and tolerates a body that removed the file."""

    async def main() -> None:
        async with async_temp_file(dir=tmp_path) as path:
            if how == "raises":
                raise Boom
            path.unlink()

    with contextlib.suppress(Boom):
        asyncio.run(main())
    assert list(tmp_path.iterdir()) == []


class AsyncFakeCursor:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.closed = False

    async def close(self) -> None:
        self.log.append("close")
        self.closed = True


class AsyncFakeConnection:
    """A driver whose every method is a coroutine (aiosqlite-style)."""

    def __init__(self, *, fail_rollback: bool = False, fail_commit: bool = False) -> None:
        self.log: list[str] = []
        self.fail_rollback = fail_rollback
        self.fail_commit = fail_commit
        self.cursors: list[AsyncFakeCursor] = []

    def _new_cursor(self) -> AsyncFakeCursor:
        self.log.append("cursor")
        self.cursors.append(AsyncFakeCursor(self.log))
        return self.cursors[-1]

    async def cursor(self) -> AsyncFakeCursor:
        return self._new_cursor()

    async def commit(self) -> None:
        self.log.append("commit")
        if self.fail_commit:
            raise ConnectionError("commit lost")

    async def rollback(self) -> None:
        self.log.append("rollback")
        if self.fail_rollback:
            raise ConnectionError("connection gone")


class SyncCursorAsyncConnection(AsyncFakeConnection):
    """psycopg-style: cursor() is plain, the rest are coroutines."""

    def cursor(self) -> AsyncFakeCursor:  # type: ignore[override]
        return self._new_cursor()


ASYNC_DRIVERS = [AsyncFakeConnection, SyncCursorAsyncConnection, FakeConnection]


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
def test_async_transaction_commits_on_success(driver: Any) -> None:
    """Success: cursor closed then commit, whether the methods are coroutines or not."""
    conn = driver()

    async def main() -> None:
        async with async_database_transaction(conn) as cur:
            assert cur is conn.cursors[0]

    asyncio.run(main())
    assert conn.log == ["cursor", "close", "commit"]
    assert conn.cursors[0].closed


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
def test_async_transaction_rolls_back_on_failure(driver: Any) -> None:
    """Failure: cursor closed then rollback; the original exception propagates."""
    conn = driver()
    error = Boom("async body failed")

    async def main() -> None:
        async with async_database_transaction(conn):
            _boom(error)

    with pytest.raises(Boom) as info:
        asyncio.run(main())
    assert info.value is error
    assert conn.log == ["cursor", "close", "rollback"]
    assert conn.cursors[0].closed


def test_async_failing_rollback_does_not_hide_original_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The async twin reports a failing rollback exactly as the sync one does."""
    conn = AsyncFakeConnection(fail_rollback=True)
    error = Boom("original")

    async def main() -> None:
        async with async_database_transaction(conn):
            raise error

    with caplog.at_level(logging.ERROR, logger="resilient.cleanup"), pytest.raises(Boom) as info:
        asyncio.run(main())
    assert info.value is error
    assert _notes(info.value) == [
        "resilient: database_transaction could not roll back during cleanup: ConnectionError: connection gone"
    ]
    (record,) = caplog.records
    assert record.getMessage() == (
        "database_transaction could not roll back: ConnectionError: connection gone; the "
        "connection may hold the transaction open until it is closed; the Boom raised in the "
        "block propagates"
    )
    assert record.__dict__["action"] == "rollback"


def test_async_failing_commit_rolls_back_and_raises_commit_error() -> None:
    """An async commit that fails is followed by a rollback, and its error propagates."""
    conn = AsyncFakeConnection(fail_commit=True)

    async def main() -> None:
        async with async_database_transaction(conn):
            pass

    with pytest.raises(ConnectionError, match="commit lost"):
        asyncio.run(main())
    assert conn.log == ["cursor", "close", "commit", "rollback"]


def test_async_unprintable_rollback_error_does_not_hide_original() -> None:
    """The async twin reports a rollback error whose str() raises without raising it."""

    class Conn(AsyncFakeConnection):
        async def rollback(self) -> None:
            self.log.append("rollback")
            raise UnprintableError

    conn = Conn()
    error = Boom("original")

    async def main() -> None:
        async with async_database_transaction(conn):
            raise error

    with pytest.raises(Boom) as info:
        asyncio.run(main())
    assert info.value is error
    assert _notes(error) == [
        "resilient: database_transaction could not roll back during cleanup: UnprintableError: <UnprintableError (str() failed)>"
    ]


def test_async_transaction_cancelled_rolls_back_and_propagates() -> None:
    """A task cancelled inside the block is rolled back, and stays cancelled."""
    conn = AsyncFakeConnection()

    async def main() -> None:
        started = asyncio.Event()

        async def work() -> None:
            async with async_database_transaction(conn):
                started.set()
                await asyncio.Event().wait()  # never set: only cancellation ends it

        task = asyncio.create_task(work())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert conn.log == ["cursor", "close", "rollback"]


def test_async_transaction_works_with_plain_sqlite3(
    db: tuple[sqlite3.Connection, Path],
) -> None:
    """A plain sqlite3 connection works with the async twin: commit and rollback."""
    conn, path = db

    async def main() -> None:
        async with async_database_transaction(conn) as cur:
            cur.execute("INSERT INTO items VALUES ('plum', 3)")
        async with async_database_transaction(conn) as cur:
            cur.execute("DELETE FROM items")
            raise Boom

    with pytest.raises(Boom):
        asyncio.run(main())
    assert _rows(path) == [("apple", 1), ("pear", 2), ("plum", 3)]


# --------------------------------------------------------------------------- #
# re-entering one manager object
# --------------------------------------------------------------------------- #


def test_temp_file_refuses_nested_reentry_and_removes_outer_file(tmp_path: Path) -> None:
    """Entering the same manager inside its own block is refused; the outer file is removed.

    Regression: the inner enter overwrote the outer path, which stayed on disk.
    """
    manager = safe_temp_file(dir=tmp_path)
    seen: list[Path] = []

    def nested() -> None:
        with manager as outer:
            seen.append(outer)
            assert outer.exists()
            with manager:
                pytest.fail("the inner block must not run")

    with pytest.raises(RuntimeError, match=r"safe_temp_file: .*already in use"):
        nested()
    assert len(seen) == 1
    assert not seen[0].exists()
    assert list(tmp_path.iterdir()) == []


def test_temp_file_may_be_reused_after_its_block(tmp_path: Path) -> None:
    """Re-use after the block ended is not re-entry: each use gets a new file."""
    manager = safe_temp_file(dir=tmp_path)
    with manager as first:
        pass
    with manager as second:
        assert second.exists()
    assert first != second
    assert list(tmp_path.iterdir()) == []


def test_async_temp_file_refuses_nested_reentry(tmp_path: Path) -> None:
    """The async twin refuses re-entry the same way and removes the outer file."""
    manager = async_temp_file(dir=tmp_path)

    async def main() -> None:
        async with manager, manager:
            pytest.fail("the inner block must not run")

    with pytest.raises(RuntimeError, match=r"async_temp_file: .*already in use"):
        asyncio.run(main())
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_refuses_nested_reentry(tmp_path: Path) -> None:
    """A nested enter of one atomic_write is refused; the target is untouched, no temp left."""
    target = tmp_path / "data.txt"
    target.write_text("old", encoding="utf-8")
    manager = atomic_write(target)

    def nested() -> None:
        with manager as f:
            f.write("new")
            with manager:
                pytest.fail("the inner block must not run")

    with pytest.raises(RuntimeError, match=r"atomic_write: .*already in use"):
        nested()
    assert target.read_text(encoding="utf-8") == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_transaction_refuses_nested_reentry() -> None:
    """A nested enter of one transaction is refused; the outer one rolls back and closes."""
    conn = FakeConnection()
    manager = database_transaction(conn)

    def nested() -> None:
        with manager, manager:
            pytest.fail("the inner block must not run")

    with pytest.raises(RuntimeError, match=r"database_transaction: .*already in use"):
        nested()
    assert conn.log == ["cursor", "close", "rollback"]
    with manager:  # usable again once its block ended
        pass
    assert conn.log[3:] == ["cursor", "close", "commit"]


def test_async_transaction_refuses_nested_reentry() -> None:
    """The async twin refuses re-entry the same way."""
    conn = AsyncFakeConnection()
    manager = async_database_transaction(conn)

    async def main() -> None:
        async with manager, manager:
            pytest.fail("the inner block must not run")

    with pytest.raises(RuntimeError, match=r"async_database_transaction: .*already in use"):
        asyncio.run(main())
    assert conn.log == ["cursor", "close", "rollback"]


# --------------------------------------------------------------------------- #
# module hygiene
# --------------------------------------------------------------------------- #


def test_cleanup_does_not_import_asyncio() -> None:
    """Importing resilient.cleanup loads neither asyncio nor tempfile."""
    code = (
        "import sys, resilient.cleanup; "
        "print(sorted(m for m in ('asyncio', 'tempfile') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_public_names() -> None:
    """__all__ lists exactly the five managers."""
    assert sorted(cleanup.__all__) == [
        "async_database_transaction",
        "async_temp_file",
        "atomic_write",
        "database_transaction",
        "safe_temp_file",
    ]


def test_a_missing_directory_is_reported_with_the_path_the_user_gave(tmp_path: Path) -> None:
    """Not the hidden temporary file: the path passed to atomic_write, and why."""
    target = tmp_path / "no" / "such" / "dir" / "x.txt"
    with pytest.raises(FileNotFoundError) as info, cleanup.atomic_write(target) as f:
        f.write("x")
    assert info.value.filename == str(target)
    assert ".tmp" not in str(info.value)
    assert f"the directory {str(target.parent)!r} does not exist" in str(info.value)
    assert not (tmp_path / "no").exists()
