"""The model registry: every model of the course registers once, by name, with everything the
rest of the code asks of it; nothing else switches on a model's name (timm's
``@register_model`` + ``create_model``).

An entry (:class:`ModelSpec`) is a builder and what is known about its models: build options
and their defaults (saved in checkpoints, e.g. Meso-4's ``highpass``), where pretrained
weights come from, the input normalisation, the Grad-CAM target layer, the layer groups of
the randomisation test (:mod:`dfcourse.sanity`), the display name. Names are per task:
``detector`` (notebook 02: :func:`dfcourse.models.build_detector`), ``localizer`` (notebook
04, named by its encoder) and ``clip_head`` (notebook 03); a name with a localizer entry can
be a localizer encoder. Every model answers "which model is this" with ``.arch``, its name here.
Entries register where their classes live (``models``, ``localization``, ``clip_peft``), so a
model's module, once imported, has registered it.
Used in notebooks 04 and 05; by ``checkpoints``, ``sanity`` and ``recipes``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

TASKS = ("detector", "localizer", "clip_head")


@dataclass(frozen=True)
class ModelSpec:
    """One registered model. ``build(pretrained=..., weights=..., **options)`` returns it with its
    ``weights`` record (:class:`dfcourse.models.Weights`) set; ``weights`` here is where pretrained
    weights come from (a :class:`dfcourse.models.WeightSpec`; ``None``: none exist). ``labels``
    name option values for people, e.g. ``{"highpass": {False: "plain"}}``."""

    name: str
    task: str
    build: Callable
    display: str = ""
    options: dict = field(default_factory=dict)
    mean: tuple | None = None
    std: tuple | None = None
    weights: object = None
    from_scratch: bool = False  # no pretrained weights exist: it trains from random init by design
    cam_target: str = ""        # module path of the Grad-CAM target layer, e.g. "backbone.layer4.1"
    layer_groups: tuple = ()    # ((name, (module paths...)), ...), top-down, for the randomisation test
    input_size: int | None = None  # the one input size it takes (a ViT's), else None
    saved: bool = True          # checkpoints can write it (False: it needs a model too big to save)
    labels: dict = field(default_factory=dict)

    def label(self, options: dict | None = None) -> str:
        """Short name with its non-default options, e.g. ``meso4-plain`` (run folders, tables)."""
        return "-".join([self.name, *self._words(options)])

    def title(self, options: dict | None = None) -> str:
        """Display name with its non-default options, e.g. ``Meso-4 (plain)``."""
        words = self._words(options)
        return (self.display or self.name) + (f" ({', '.join(words)})" if words else "")

    def _words(self, options) -> list[str]:
        given = {**self.options, **(options or {})}
        return [self.labels[k][v] for k, v in given.items() if v in self.labels.get(k, {})]


_REGISTRY: dict[tuple[str, str], ModelSpec] = {}
_ALIASES: dict[tuple[str, str], tuple[str, dict]] = {}


def register_model(name: str, task: str = "detector", *, display: str = "", options: dict | None = None,
                   mean: tuple | None = None, std: tuple | None = None, weights=None, from_scratch: bool = False,
                   cam_target: str = "", layer_groups=(), input_size: int | None = None, saved: bool = True,
                   labels: dict | None = None):
    """Decorator: register the builder it decorates as ``name`` for ``task``, with the
    :class:`ModelSpec` fields of the same names. A name is registered once per task."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    groups = tuple((g, tuple(paths)) for g, paths in layer_groups)

    def register(build):
        if (task, name) in _REGISTRY:
            raise ValueError(f"{task} {name!r} is already registered")
        _REGISTRY[task, name] = ModelSpec(name, task, build, display, dict(options or {}), mean, std, weights,
                                          from_scratch, cam_target, groups, input_size, saved, dict(labels or {}))
        return build
    return register


def register_alias(alias: str, name: str, options: dict, task: str = "detector") -> None:
    """An old name that stands for ``name`` with ``options`` (checkpoints and command lines that
    used it keep working)."""
    _ALIASES[task, alias] = (name, dict(options))


def unregister(name: str, task: str = "detector") -> None:
    """Remove ``name`` (tests that register a model of their own)."""
    _REGISTRY.pop((task, name), None)


def names(task: str = "detector") -> list[str]:
    return sorted(n for t, n in _REGISTRY if t == task)


def model_spec(name: str, task: str = "detector") -> ModelSpec:
    """The entry of ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    return resolve(name, task)[0]


def resolve(name: str, task: str = "detector", options: dict | None = None) -> tuple[ModelSpec, dict]:
    """``(entry, full options)`` for ``name`` (or an alias of it) with ``options`` over the
    entry's defaults; an unknown name or option is a ``ValueError`` saying what is known."""
    alias_options = {}
    if (task, name) in _ALIASES:
        name, alias_options = _ALIASES[task, name]
    if (task, name) not in _REGISTRY:
        known = names(task) + sorted(a for t, a in _ALIASES if t == task)
        raise ValueError(f"unknown {task} {name!r}; choose from {known}")
    spec = _REGISTRY[task, name]
    given = {**alias_options, **(options or {})}
    unknown = set(given) - set(spec.options)
    if unknown:
        raise ValueError(f"{task} {name!r} has no option {sorted(unknown)}; its options: {spec.options}")
    return spec, {**spec.options, **given}


def create_model(name: str, task: str = "detector", pretrained: bool = False, weights=None,
                 options: dict | None = None):
    """Build the registered ``name`` (``weights``: a file of pretrained weights, else they are
    looked for as :func:`dfcourse.models.load_pretrained` says)."""
    spec, options = resolve(name, task, options)
    return spec.build(pretrained=pretrained, weights=weights, **options)


def spec_of(net, task: str = "detector") -> ModelSpec | None:
    """The entry of a built model (by its ``.arch``), or ``None``."""
    key = (task, getattr(net, "arch", None))
    return _REGISTRY.get(key)


def options_of(net, task: str = "detector") -> dict:
    """A built model's options, read from the model (what a checkpoint saves to rebuild it)."""
    return {k: getattr(net, k) for k in model_spec(net.arch, task).options}


def display_name(net, task: str = "detector") -> str:
    """What people call the model ``net``, e.g. ``ResNet18``, ``Meso-4 (plain)``; its ``.arch``
    when it is not registered."""
    spec = spec_of(net, task)
    return spec.title(options_of(net, task)) if spec else str(getattr(net, "arch", type(net).__name__))
