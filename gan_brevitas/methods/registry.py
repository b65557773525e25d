"""The one table of quantization methods: a typed config per method, registered with its handler.

A method is a frozen dataclass (its options, validated in ``__post_init__``) and a handler,
joined by `register_method`:

    @dataclass(frozen=True)
    class MyPTQ:
        num_samples: int = 500
        progress: bool = True

    @register_method("my-ptq", MyPTQ)
    def my_ptq(float_model, config, inputs, options: MyPTQ) -> nn.Module: ...

`recipes.quantize(gen, MyPTQ(num_samples=64), ...)` and `recipes.quantize(gen, "my-ptq",
num_samples=64, ...)` then both run it; `reproduce` recipe files, the CLI's ``--set KEY=VALUE``
and every "unknown option" message read the same fields from here.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from torch import nn

from gan_brevitas.errors import ConfigError

#: handler(folded float model, QuantConfig, inputs, method config, **extras) -> quantized model.
Handler = Callable[..., nn.Module]


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    Attributes:
        name: the canonical string name ("vanilla-ptq").
        config_type: the frozen dataclass of its options.
        handler: runs it (see `Handler`).
        aliases: other names, each with the options it fixes (``{"modelopt-int8": {"preset":
            "int8"}}``); an alias with no options is just another spelling.
        extras: keyword arguments the handler takes that are Python objects, not options
            (a discriminator module, a callback); not part of the config, never in files.
    """

    name: str
    config_type: type
    handler: Handler
    aliases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extras: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """The option names (the config dataclass's fields)."""
        return tuple(f.name for f in dataclasses.fields(self.config_type))

    def name_of(self, config: Any) -> str:
        """The name to record for ``config``: the first alias whose fixed options it has."""
        for alias, fixed in self.aliases.items():
            if fixed and all(getattr(config, key) == value for key, value in fixed.items()):
                return alias
        return self.name


_BY_NAME: dict[str, tuple[MethodSpec, Mapping[str, Any]]] = {}
_BY_TYPE: dict[type, MethodSpec] = {}


def register_method(
    name: str,
    config_type: type,
    *,
    aliases: Union[Iterable[str], Mapping[str, Mapping[str, Any]]] = (),
    extras: Iterable[str] = (),
) -> Callable[[Handler], Handler]:
    """Decorator: register the decorated handler as method ``name`` configured by ``config_type``."""
    if not (dataclasses.is_dataclass(config_type) and config_type.__dataclass_params__.frozen):
        raise TypeError(f"{config_type!r} must be a frozen dataclass to be a method config.")
    fixed = dict(aliases) if isinstance(aliases, Mapping) else {alias: {} for alias in aliases}

    def decorate(handler: Handler) -> Handler:
        spec = MethodSpec(name, config_type, handler, fixed, tuple(extras))
        taken = [n for n in (name, *fixed) if n in _BY_NAME] + ([config_type.__name__] if config_type in _BY_TYPE else [])
        if taken:
            raise ValueError(f"method name(s) or config type {taken} are registered already.")
        for alias, options in {name: {}, **fixed}.items():
            unknown = set(options) - set(spec.fields)
            if unknown:
                raise ValueError(f"alias {alias!r} fixes unknown option(s) {sorted(unknown)}.")
            _BY_NAME[alias] = (spec, dict(options))
        _BY_TYPE[config_type] = spec
        return handler

    return decorate


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def method_names() -> list[str]:
    """Every name a method can be given by (canonical names and aliases), sorted."""
    return sorted(_BY_NAME)


def method_spec(method: Any) -> MethodSpec:
    """The spec of a method name or of a method config instance; ConfigError if unknown."""
    if isinstance(method, str):
        found = _BY_NAME.get(method)
        if found is None:
            raise ConfigError(
                f"unknown method {method!r}{_suggest(method, _BY_NAME)}; choose one of {method_names()}."
            )
        return found[0]
    spec = _BY_TYPE.get(type(method))
    if spec is None:
        raise ConfigError(
            f"method must be a method name or a method config such as "
            f"{', '.join(sorted(t.__name__ for t in _BY_TYPE))}; got {type(method).__name__}."
        )
    return spec


def check_option_names(method: str, names: Iterable[str], allowed_extras: bool = True) -> None:
    """ConfigError naming the first option of ``names`` that ``method`` does not have."""
    spec = method_spec(method)
    known = set(spec.fields) | (set(spec.extras) if allowed_extras else set())
    for name in names:
        if name not in known:
            raise ConfigError(
                f"unknown {method} option {name!r}{_suggest(name, known)}; the {method} options "
                f"({spec.config_type.__name__}) are: {', '.join(sorted(known))}."
            )


def method_config(method: Any, **options: Any) -> Any:
    """The validated config of ``method`` (a name, with ``options`` as its fields; or a config,
    with ``options`` replacing fields)."""
    spec = method_spec(method)
    name = method if isinstance(method, str) else spec.name
    check_option_names(name, options, allowed_extras=False)
    if not isinstance(method, str):
        return dataclasses.replace(method, **options) if options else method
    return spec.config_type(**{**_BY_NAME[method][1], **options})


def resolve_method(method: Any, options: Mapping[str, Any]) -> tuple[MethodSpec, Any, dict[str, Any]]:
    """(spec, config, extras) of ``recipes.quantize(model, method, **options)``."""
    spec = method_spec(method)
    check_option_names(method if isinstance(method, str) else spec.name, options)
    extras = {key: value for key, value in options.items() if key in spec.extras}
    fields = {key: value for key, value in options.items() if key not in spec.extras}
    return spec, method_config(method, **fields), extras

