"""The compression method registry: every method and what the rest of compsafe must know.

A method is registered once with its family (``FAMILIES``), the calibration statistics it
needs (``stats.NEEDS``: activation norms, Hessians, stored inputs), whether it needs squared
gradients (GBLM), whether its maths runs serially (long chains of small ops: one CPU thread
beats two, see ``layers.compress_sequential``), and its implementation:

- a *layer* function ``apply(w, spec, stats, grad_sq) -> new w`` for one (out, in) float32
  weight (``stats`` a ``stats.LayerStats`` or None, ``grad_sq`` the GBLM gradient sums or
  None), or
- with ``block=True``, ``apply(linears, stats, spec) -> (reports, extras)`` for all of a
  block's linears at once (AWQ searches scales per group of layers sharing an input).

It also declares which spec settings it takes (``takes``, ``SETTINGS``; by default its
family's, ``FAMILY_SETTINGS``) and, optionally, ``validate(spec)``: its own checks of
their values, raising ``OptionError(field, message)``. ``CompressionSpec`` applies both
(``checks.py``), so the CLI and sweep configs report a method's refusal under their own
name for the field, and a method of one's own is validated like a built-in one.

Spec validation (``spec.py``), the CLI's method lists, the sweep's setting keys, the
statistics collected, the thread count and the memory model all read this registry.

    register_method("owl-wanda", "my_methods:owl_wanda", family="pruning", needs={"act"})
    method_info("sparsegpt").needs      # frozenset({"hessian"})

Built-in methods are registered the same way, in ``compress/builtin.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from compsafe.registry import Entry, Registry, RegistryError, check_target

FAMILIES = ("none", "pruning", "quantization", "load_time")
"""``none``: the dense baseline. ``pruning``: takes ``sparsity`` or an N:M ``structure``.
``quantization``: weight-only, takes ``bits`` (2-8) and ``group_size``. ``load_time``:
quantized by bitsandbytes when the model loads (fixed bits, saved in its format)."""

STATISTICS = ("act", "hessian", "inputs")
"""What the calibration pass can collect per linear (``stats.collect``)."""

SETTINGS = ("sparsity", "structure", "bits", "group_size", "symmetric", "act_order")
"""The spec fields a method may or may not take; a spec that sets one its method does not
take (a value other than the field's default) is refused, never silently ignored."""
FAMILY_SETTINGS = {"none": (), "pruning": ("sparsity", "structure"),
                   "quantization": ("bits", "group_size", "symmetric"), "load_time": ()}
"""What a method of each family takes unless it declares otherwise (GPTQ adds
``act_order``); ``load_time`` methods fix their own bits (bitsandbytes)."""


@dataclass(frozen=True)
class MethodInfo:
    """What a registered compression method declares."""

    family: str
    needs: frozenset[str] = frozenset()
    gradients: bool = False
    serial: bool = False
    block: bool = False  # ``apply`` takes a block's linears, not one weight
    description: str = ""
    takes: tuple[str, ...] = ()  # the SETTINGS it reads, in SETTINGS order
    validate: Callable[[Any], None] | None = None  # its own checks: validate(spec)

    @property
    def calibrated(self) -> bool:
        """Needs calibration text (statistics or gradients)."""
        return bool(self.needs) or self.gradients


METHODS: Registry[MethodInfo] = Registry("compression method")
"""Method name -> ``Entry`` (apply function or "module:attr", ``MethodInfo``)."""


def register_method(name: str, apply: Callable | str | None = None, *, family: str,
                    needs: Iterable[str] = (), gradients: bool = False, serial: bool = False,
                    block: bool = False, description: str = "",
                    takes: Iterable[str] | None = None,
                    validate: Callable[[Any], None] | None = None) -> Entry[MethodInfo]:
    """Register compression method ``name`` (see the module docstring). ``apply`` may be
    None only for families whose work happens elsewhere (``none``, ``load_time``).
    ``takes`` (default: the family's ``FAMILY_SETTINGS``) lists the spec settings it reads;
    ``validate(spec)``, called once the spec's generic checks passed, raises
    ``compsafe.errors.OptionError(field, message)`` for values the method cannot use."""
    where = f"compression method {name!r}"
    if family not in FAMILIES:
        raise RegistryError(f"{where}: unknown family {family!r}; known: {', '.join(FAMILIES)}")
    unknown = sorted(set(needs) - set(STATISTICS))
    if unknown:
        raise RegistryError(f"{where}: unknown statistics {unknown}; known: "
                            f"{', '.join(STATISTICS)}")
    if apply is None and family in ("pruning", "quantization"):
        raise RegistryError(f"{where}: a {family} method needs its apply function")
    if apply is not None and not callable(apply):
        check_target(apply, where)
    takes = FAMILY_SETTINGS[family] if takes is None else tuple(takes)
    unknown = sorted(set(takes) - set(SETTINGS))
    if unknown:
        raise RegistryError(f"{where}: unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    if validate is not None and not callable(validate):
        raise RegistryError(f"{where}: validate must be a function of the spec, got "
                            f"{validate!r}")
    info = MethodInfo(family, frozenset(needs), bool(gradients), bool(serial), bool(block),
                      description, tuple(s for s in SETTINGS if s in takes), validate)
    return METHODS.add(name, apply, info)


def unregister_method(name: str) -> None:
    METHODS.remove(name)


def method_info(name: str) -> MethodInfo:
    """The metadata of ``name``; an unknown name lists the known ones."""
    return METHODS.entry(name).meta


def method_apply(name: str) -> Any:
    """The implementation of ``name``, imported now if registered as a path."""
    return METHODS.load(name)


def family(name: str):
    """A live, ordered set of the methods of family ``name``."""
    return METHODS.select(lambda info: info.family == name)


import compsafe.compress.builtin  # noqa: E402,F401  (registers the built-in methods)
