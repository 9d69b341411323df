"""Strictly private. Small helpers the modules share: Python-version shims, callable kinds."""

from __future__ import annotations

import math
import sys
from collections import namedtuple
from functools import partial
from types import AsyncGeneratorType, CoroutineType, FunctionType, GeneratorType, MethodType

# Not ``typing.TYPE_CHECKING``: the call paths never import ``typing`` (see
# ``resilient/__init__.py``); type checkers treat any name ``TYPE_CHECKING`` as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any, ClassVar, NoReturn, TypeGuard
    from typing import NamedTuple as NamedTuple

    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: object) -> Callable[[type], type]:
        """``typing.dataclass_transform`` (PEP 681) for type checkers only."""
        return lambda cls: cls


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` (PEP 678), also on Python 3.10, where it is done by hand."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        notes = getattr(exc, "__notes__", None)
        exc.__notes__ = [*notes, note] if isinstance(notes, list) else [note]  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]


MAX_SECONDS = 315_576_000.0
"""The longest duration any parameter accepts: ten years (of 365.25 days).

Far beyond any sensible wait, and far below what ``time.sleep`` and
``threading.Event.wait`` refuse with an ``OverflowError`` (about 9.2e9 s):
a longer value is a mistake, said at construction rather than at the first
wait in production.
"""


def duration(
    name: str,
    value: object,
    *,
    allow_zero: bool = True,
    maximum: float = MAX_SECONDS,
    also: str = "",
    said: str = "",
) -> float:
    """*value*, a duration parameter, in seconds: a number or a ``datetime.timedelta``.

    Raises ``TypeError`` or ``ValueError`` naming *name* and the value: not a
    number, not finite, negative (or zero unless *allow_zero*), or above
    *maximum* (an int too large for a float, ``10**400``, included). *also*
    names what else the parameter takes, for the message (``" or a
    Backoff"``); *said*, why *maximum* is the bound (``"a minute"``), which
    words the message as the Redis settings' (``name must be <= 60 s (a
    minute), got name=...``). ``datetime`` is not imported: a timedelta is
    recognised by its ``total_seconds()``.
    """
    seconds_ = value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        total_seconds = getattr(value, "total_seconds", None)
        if isinstance(value, (bool, str, bytes)) or not callable(total_seconds):
            raise TypeError(
                f"{name} must be a number of seconds{also}, got {value!r} "
                "(a datetime.timedelta works too)"
            )
        seconds_ = total_seconds()
        if isinstance(seconds_, bool) or not isinstance(seconds_, (int, float)):
            raise TypeError(f"{name} must be a number of seconds{also}, got {value!r}")
    assert isinstance(seconds_, (int, float))
    # An int is finite however large (math.isfinite would raise OverflowError past the
    # largest float): the bound below refuses it, compared exactly.
    finite = isinstance(seconds_, int) or math.isfinite(seconds_)
    if not finite or seconds_ < 0 or (seconds_ == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {shown(value)}")
    if seconds_ > maximum:
        if said:
            raise ValueError(
                f"{name} must be <= {seconds(maximum)} s ({said}), got {name}={shown(value)}"
            )
        years = " (ten years)" if maximum == MAX_SECONDS else ""
        raise ValueError(
            f"{name} must be at most {maximum:.0f} s{years}, got {shown(value)}: a longer wait "
            "is a mistake, and past about 9.2e9 s the platform's sleep fails"
        )
    if seconds_ > _LARGEST_FLOAT:  # no maximum given, and too large for a float
        raise ValueError(f"{name} must be a finite number of seconds, got {shown(value)}")
    return float(seconds_)


_LARGEST_FLOAT = sys.float_info.max


def positive_number(name: str, value: object) -> float:
    """*value*, a count or rate parameter (``max_tokens``, ``rate``, ``cost``), as a float > 0.

    Raises ``TypeError`` (not a number) or ``ValueError`` (not > 0, not
    finite, or an int too large for a float, such as ``10**400``) naming
    *name* and the value, never the ``OverflowError`` of a conversion.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, int):
        if value > 0 and value <= _LARGEST_FLOAT:
            return float(value)
    elif math.isfinite(value) and value > 0:
        return float(value)
    raise ValueError(f"{name} must be a finite number > 0, got {shown(value)}")


def shown(value: object) -> str:
    """``repr(value)`` for a message, an int too long to read (or to print) by its size.

    ``10**400`` is shown as ``an int of about 1e+400``: its repr is 401
    digits long, and past 4300 digits ``repr`` itself raises ``ValueError``.
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**20:
        sign = "-" if value < 0 else ""
        return f"an int of about {sign}1e+{int(math.log10(abs(value)))}"
    return repr(value)


def is_async_callable(func: object) -> TypeGuard[Callable[..., Awaitable[Any]]]:
    """Whether calling *func* returns a coroutine: an ``async def`` function or method,
    a ``functools.partial`` of one, or an object whose ``__call__`` is ``async def``."""
    flags = _plain_code_flags(func)
    if flags is not None:
        return bool(flags & _CO_COROUTINE)
    import inspect  # noqa: PLC0415 - only callables other than plain functions need it

    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - the attribute, not callable()
    return not inspect.isfunction(func) and inspect.iscoroutinefunction(call)


# The flags of ``inspect`` (``CO_*``), stable since Python 3.6.
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200
_GENERATOR_FLAGS = _CO_GENERATOR | _CO_ASYNC_GENERATOR

# What ``inspect`` reads on a plain function besides its code flags:
# ``markcoroutinefunction``'s mark (3.12+) and ``partialmethod``'s link (3.13+).
_INSPECT_MARKS = ("_is_coroutine_marker", "__partialmethod__")


def _plain_code_flags(func: object) -> int | None:
    """The code flags of a plain function that ``inspect`` judges by them alone, else ``None``.

    For such a function (the common case) ``inspect.iscoroutinefunction``,
    ``isgeneratorfunction`` and ``isasyncgenfunction`` only test these flags;
    reading them here keeps ``inspect`` (and what it imports) out of
    ``from resilient import retry``. Anything else asks ``inspect``.
    """
    if type(func) is not FunctionType:
        return None
    attributes = func.__dict__
    if attributes and any(mark in attributes for mark in _INSPECT_MARKS):
        return None
    return func.__code__.co_flags


def name_of(func: object) -> str:
    """The qualified name of the code *func* runs, for messages: ``fetch_user``, ``Client.get``.

    Never a ``repr``, which may hold arguments (a token given to a
    ``functools.partial``) or an address, and would make a telemetry label
    per object: a partial is named by its underlying function, a bound method
    by its function, a callable instance (or anything without a name) by its
    class, a wrapper that sets ``__wrapped__`` (``functools.wraps``) by what
    it wraps.
    """
    return _named(func)[1]


def qualified_name_of(func: object) -> str:
    """``name_of(func)`` with its module: ``myapp.users.fetch_user``, the ``function`` field."""
    module, name = _named(func)
    return f"{module}.{name}"


# Typed as plain classes: what they wrap is read as an ``object`` (a name is all we want).
_PARTIAL: type[object] = partial
_METHOD: type[object] = MethodType


def _named(func: object) -> tuple[str, str]:
    """The module and qualified name of what *func* runs (see ``name_of``); never raises."""
    target = func
    for _ in range(100):  # a partial of a partial ...; bounded, should one loop back on itself
        if isinstance(target, _PARTIAL):
            target = _attribute(target, "func")
        elif isinstance(target, _METHOD):
            target = _attribute(target, "__func__")
        else:
            # A wrapper made with functools.wraps (``@breaker``, ``@limiter``) is named by
            # what it wraps: wraps copies no name from a callable instance or a partial.
            attributes = _attribute(target, "__dict__")
            if not isinstance(attributes, dict) or "__wrapped__" not in attributes:
                break
            wrapped = _attribute(target, "__wrapped__")
            if wrapped is None:
                break
            target = wrapped
    name = _attribute(target, "__qualname__")
    module = _attribute(target, "__module__")
    if not isinstance(name, str) or isinstance(target, (_PARTIAL, _METHOD)):
        kind: type[object] = type(target)  # an instance, callable or not: named by its class
        name, module = _attribute(kind, "__qualname__"), _attribute(kind, "__module__")
    elif not isinstance(module, str):  # a method of a builtin type (``[].append``): its type's
        owner = _attribute(target, "__objclass__") or type(_attribute(target, "__self__"))
        module = _attribute(owner, "__module__")
    return (module if isinstance(module, str) and module else "?"), (
        name if isinstance(name, str) else "?"
    )


def _attribute(thing: object, name: str) -> object:
    """``getattr(thing, name, None)``, also when the lookup raises something else."""
    try:
        return getattr(thing, name, None)
    except Exception:  # a hostile __getattribute__: a name for a log line will do without
        return None


def seconds(value: float) -> str:
    """Seconds for a person to read: ``"0.42"``, ``"60"``, ``"0.0031"``."""
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    if value >= 0.1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


LAZY_RESULTS: frozenset[type] = frozenset({CoroutineType, GeneratorType, AsyncGeneratorType})
"""What a function returns when calling it does not run its work."""


def check_callable(func: object, form: str, *, sync_only: bool, task: str | None = None) -> None:
    """Refuse, with a message that says what to do, what *form* cannot run.

    One check for every call form and decorator: *func* must be callable and
    not a generator function, and a *sync_only* form refuses coroutine
    functions. (The async forms accept any callable: a plain function may
    return an awaitable, which they check when it runs.)
    *form* names the form as the user wrote it (``"@retry"``,
    ``"retry_with_backoff()"``, ``"breaker.call()"``); *task*, when given,
    names the task the message starts with (``"task 'sync-users': "``).
    """
    # A plain function is judged by its code flags alone; one without attributes
    # (the common case: tasks check theirs at every call) without another call.
    if type(func) is FunctionType and not func.__dict__:
        flags: int | None = func.__code__.co_flags
    else:
        flags = _plain_code_flags(func)
    if flags is not None:
        if flags & _GENERATOR_FLAGS or (sync_only and flags & _CO_COROUTINE):
            _refuse(func, form, task)
        return
    if (
        not callable(func)
        or _is_generator_function(func)
        or (sync_only and is_async_callable(func))
    ):
        _refuse(func, form, task)


def _refuse(func: object, form: str, task: str | None) -> NoReturn:
    subject = "" if task is None else f"task {task!r}: "
    if not callable(func):
        raise TypeError(f"{subject}{form} needs a function to call, got {func!r}")
    if _is_generator_function(func):
        raise TypeError(
            f"{subject}{form} cannot run the generator function {name_of(func)!r}: calling it only "
            "creates the generator, so failures while iterating it would go unseen; "
            "wrap the code that consumes it, or return a list instead"
        )
    raise TypeError(
        f"{subject}{form} cannot run the coroutine function {name_of(func)!r}: {_ASYNC_HINT[form]}"
    )


def _is_generator_function(func: object) -> bool:
    flags = _plain_code_flags(func)
    if flags is not None:
        return bool(flags & _GENERATOR_FLAGS)
    import inspect  # noqa: PLC0415 - only callables other than plain functions need it

    return inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)


def refuse_lazy_result(result: object, func: object, form: str) -> NoReturn:
    """*func*, run by the sync *form*, returned a coroutine or generator: close it and refuse.

    Counting it as a success would be a lie: none of its work has run.
    """
    close = getattr(result, "close", None)
    if close is not None and not isinstance(result, AsyncGeneratorType):
        close()  # no "coroutine was never awaited" warning on top of the error
    kind = "a coroutine" if isinstance(result, CoroutineType) else "a generator"
    hint = _ASYNC_HINT[form] if kind == "a coroutine" else _GENERATOR_HINT
    raise TypeError(
        f"{form} ran {name_of(func)!r}, which returned {kind} without doing its work: {hint}"
    )


_GENERATOR_HINT = "return a list, or wrap the code that consumes the generator"

_ASYNC_HINT: dict[str, str] = {
    "@retry": "decorate the 'async def' function itself, and @retry awaits it",
    "retry_with_backoff()": "use 'await retry_with_backoff_async(func, ...)'",
    "breaker.call()": "use 'await breaker.call_async(func, ...)'",
    "@breaker": "decorate the 'async def' function itself, and the breaker awaits it",
    "with breaker": "use 'async with breaker:' around the awaited call",
    "execute_task_safely()": "use execute_task_safely_async (or run_tasks_async)",
    "run_tasks()": "use run_tasks_async",
    "@limiter": "decorate the 'async def' function itself, and the limiter awaits it",
    "concurrency.call()": "use 'await concurrency.call_async(func, ...)'",
}


def trial_calls(count: int) -> str:
    """``"1 trial call"``, ``"3 trial calls"``: for log messages."""
    return f"{count} trial call" if count == 1 else f"{count} trial calls"


# -- frozen records: dataclasses without ``dataclasses`` ------------------------------


class _DataclassFields:
    """Strictly private. ``Record.__dataclass_fields__``: made on first read, then kept."""

    def __get__(self, instance: object, owner: type[Record]) -> Any:
        names = owner.__match_args__
        if not names:
            raise AttributeError("__dataclass_fields__")
        import dataclasses  # noqa: PLC0415 - only a reader of the fields pays for dataclasses
        import inspect  # noqa: PLC0415 - loaded by dataclasses

        defaults: tuple[object, ...] = getattr(owner.__init__, "__defaults__", None) or ()
        first_default = len(names) - len(defaults)
        annotations: dict[str, object] = {}
        for klass in reversed(owner.__mro__):
            annotations.update(inspect.get_annotations(klass))
        specs: list[tuple[str, object, object]] = []
        for index, name in enumerate(names):
            options: dict[str, Any] = {
                "compare": name not in owner._uncompared,  # pyright: ignore[reportPrivateUsage]
                "repr": name not in owner._unshown,  # pyright: ignore[reportPrivateUsage]
            }
            if index >= first_default:
                options["default"] = defaults[index - first_default]
            specs.append((name, annotations.get(name, "object"), dataclasses.field(**options)))
        twin: Any = dataclasses.make_dataclass(owner.__name__, specs, frozen=True)
        type.__setattr__(owner, "__dataclass_fields__", twin.__dataclass_fields__)
        type.__setattr__(owner, "__dataclass_params__", twin.__dataclass_params__)
        return twin.__dataclass_fields__


def _frozen_error(message: str) -> Exception:
    import dataclasses  # noqa: PLC0415 - only a mistake pays for dataclasses

    return dataclasses.FrozenInstanceError(message)


@dataclass_transform(frozen_default=True)
class Record:
    """Strictly private. The base of the library's frozen records (``TaskResult``...).

    To its users a record is the frozen dataclass it stands for; it is built
    without ``dataclasses``, whose import loads ``inspect`` (with ``ast``,
    ``dis`` and ``tokenize``: about 5 ms) and whose classes are made by
    generating and compiling code: more than every other module of ``from
    resilient import *`` together. A subclass lists its fields in
    ``__match_args__``, in its ``__init__``'s order (which gives the
    defaults), and may leave some out of equality and hash (``_uncompared``)
    or of the repr (``_unshown``); its ``__init__`` sets them with
    ``object.__setattr__`` (or in ``__dict__``). Here it gets what
    ``@dataclass(frozen=True)`` would give it: equality and a hash over the
    compared fields, the dataclass repr, ``FrozenInstanceError`` on
    assignment, and ``__dataclass_fields__``, built on first read by
    ``dataclasses`` itself from an equivalent dataclass, so that
    ``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` (and
    ``JsonFormatter``) treat it as one.
    """

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()
    _uncompared: ClassVar[frozenset[str]] = frozenset()
    _unshown: ClassVar[frozenset[str]] = frozenset()
    if not TYPE_CHECKING:  # type checkers know the fields from dataclass_transform
        __dataclass_fields__ = _DataclassFields()

    def _compared(self) -> tuple[object, ...]:
        uncompared = self._uncompared
        return tuple(getattr(self, name) for name in self.__match_args__ if name not in uncompared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__ or not isinstance(other, Record):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        unshown = self._unshown
        shown = (
            f"{name}={getattr(self, name)!r}" for name in self.__match_args__ if name not in unshown
        )
        return f"{type(self).__qualname__}({', '.join(shown)})"

    def __reduce__(self) -> tuple[type[Record], tuple[object, ...]]:
        # Unpickled (and copied) through __init__: a frozen record cannot be set field by field.
        return type(self), tuple(getattr(self, name) for name in self.__match_args__)

    def __setattr__(self, name: str, value: object) -> None:
        raise _frozen_error(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise _frozen_error(f"cannot delete field {name!r}")


# -- named tuples: typing.NamedTuple's class syntax, without its cost ---------------------

if not TYPE_CHECKING:  # type checkers see typing.NamedTuple (imported above)

    class _MakesNamedTuples(type):
        """Strictly private. The metaclass of ``NamedTuple`` below."""

        def __new__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
            if not bases:  # NamedTuple itself
                return super().__new__(cls, name, bases, namespace)
            fields = tuple(namespace.get("__annotations__", ()))
            made = namedtuple(
                name,
                fields,
                defaults=tuple(namespace[field] for field in fields if field in namespace),
                module=namespace["__module__"],
            )
            made.__qualname__ = namespace["__qualname__"]
            made.__doc__ = namespace.get("__doc__")
            return made

    class NamedTuple(metaclass=_MakesNamedTuples):
        """Strictly private. ``typing.NamedTuple``'s class syntax for fields and defaults.

        ``class Point(NamedTuple): x: int; y: int = 0`` makes the
        ``collections.namedtuple`` that ``typing.NamedTuple`` would, without
        checking each annotation (which compiles each one: three times what
        the named tuple itself costs). Fields, defaults and a docstring only:
        no methods.
        """
