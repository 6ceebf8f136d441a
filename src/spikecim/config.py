"""The run configuration: one YAML file, validated by pydantic, overridable from the CLI.

``spikecim run`` with no file uses :class:`RunConfig` defaults: the spiking ``convnet``
and its ANN twin on scikit-learn's digits. A YAML file gives any subset of the fields;
``--set section.field=value`` overrides one field. Unknown keys, wrong types and values
out of range fail with one line naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.pipeline.builtin_stages import DEFAULT_STAGES
from spikecim.pipeline.stages import list_stages, stage_sections
from spikecim.readers import read_settings
from spikecim.schema import MAX_INT, MAX_LR, Schema
from spikecim.variants import VariantConfig, default_variants, legacy_variants

__all__ = [
    "DataConfig",
    "ModelConfig",
    "NeuronConfig",
    "RunConfig",
    "TrainConfig",
    "VariantConfig",
    "add_method_variants",
    "apply_overrides",
    "load_config",
    "resolve_paths",
    "written_over",
]


class _Section(Schema):
    model_config = ConfigDict(validate_assignment=True)


class DataConfig(_Section):
    name: str = Field(
        "digits",
        description="digits | mnist | fashion-mnist | cifar10 | cifar100 | nmnist; text (task lm): pydoc | shakespeare | text",
    )
    root: str | None = Field(None, description="folder holding the data set files (not needed for digits)")
    encoder: Literal["direct", "rate", "latency", "frames"] = Field(
        "direct", description="spike encoder; frame data sets (nmnist) take direct or frames"
    )
    timesteps: int = Field(4, gt=0, le=10000, description="T of the spiking model (the ANN twin runs T = 1)")
    batch_size: int = Field(64, gt=0)
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="digits only: held-out share")
    limit: int | None = Field(None, gt=0, description="use at most this many training samples")
    context: int = Field(64, ge=2, le=4096, description="text data sets: tokens per window (task lm)")
    augment: list[Literal["crop", "flip", "cutout"]] = Field(
        default_factory=list, description="training batches only, in this order: crop, flip, cutout"
    )
    crop_padding: int = Field(4, ge=1, le=1024, description="augment crop: zeros padded on each side")
    cutout_size: int = Field(16, ge=1, le=4096, description="augment cutout: side of the zeroed square")

    @field_validator("augment")
    @classmethod
    def _once_each(cls, v: list[str]) -> list[str]:
        twice = sorted({op for op in v if v.count(op) > 1})
        if twice:
            raise ValueError(f"'{twice[0]}' is listed twice; each of crop, flip, cutout at most once")
        return v

    @field_validator("root")
    @classmethod
    def _root_home(cls, v: str | None) -> str | None:
        return None if v is None else expand_home(v)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from spikecim.data import list_datasets

        if v not in list_datasets():
            raise ValueError(f"unknown data set '{v}', allowed: {', '.join(list_datasets())}")
        return v


class NeuronConfig(_Section):
    """The model's neurons: the kind, the settings most neurons share, and any other argument
    the kind's class declares (``alpha`` and ``learn_alpha`` of ``synaptic``), checked by
    building the neuron once."""

    model_config = ConfigDict(validate_assignment=True, extra="allow")

    kind: str = Field("lif", description="a registered neuron: spikecim list neurons")
    beta: float = Field(0.5, ge=0.0, le=1.0)
    threshold: float = Field(1.0, gt=0.0)
    reset: Literal["subtract", "zero"] = "subtract"
    reset_delay: bool = True
    detach_reset: bool = False
    surrogate: str = "atan"
    learn_beta: bool = False
    learn_threshold: bool = False

    @field_validator("kind")
    @classmethod
    def _registered(cls, v: str) -> str:
        from spikecim.nn import list_neurons

        if v not in list_neurons():
            raise ValueError(f"unknown neuron '{v}', allowed: {', '.join(list_neurons())}")
        return v

    @model_validator(mode="after")
    def _own_arguments(self) -> NeuronConfig:
        extra = self.model_extra or {}
        if not extra:
            return self
        import inspect

        from spikecim.nn import create_neuron, get_neuron

        params = inspect.signature(get_neuron(self.kind)).parameters
        # inplace is the model's to choose (where nothing reads the neuron's input again)
        own = [a for a in params if a not in type(self).model_fields and a != "inplace"]
        for key, value in extra.items():
            if key not in own:
                raise ValueError(
                    f"{key}: not an argument of neuron '{self.kind}' (its own: {', '.join(own) or 'none'})"
                )
            switch = isinstance(params[key].default, bool)
            if isinstance(value, bool) != switch or not isinstance(value, bool | int | float | str):
                raise ValueError(f"{key}: must be {'true or false' if switch else 'a number'}, got {value!r}")
        try:
            create_neuron(self.kind, **self.module_kwargs())
        except SpikecimError as e:
            raise ValueError(str(e).removeprefix("neuron: ")) from None
        return self

    def module_kwargs(self) -> dict[str, Any]:
        """The fields that the neuron class declares as constructor arguments."""
        from spikecim.nn import neuron_arguments

        declared = neuron_arguments(self.kind)
        return {k: v for k, v in self.model_dump(exclude={"kind"}).items() if k in declared}


class ModelConfig(_Section):
    name: str = "convnet"
    neuron: NeuronConfig = NeuronConfig()
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra builder arguments")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from spikecim.models import list_models

        if v not in list_models():
            raise ValueError(f"unknown model '{v}', allowed: {', '.join(list_models())}")
        return v

    @field_validator("kwargs")
    @classmethod
    def _not_set_by_the_run(cls, v: dict[str, Any]) -> dict[str, Any]:
        from spikecim.models._registry import SET_BY_THE_RUN

        for key, where in SET_BY_THE_RUN.items():
            if key in v:
                raise ValueError(f"{key}: set by {where}; leave it out of model.kwargs")
        return v


class TrainConfig(_Section):
    epochs: int = Field(15, ge=0)
    lr: float = Field(2e-3, gt=0.0, le=MAX_LR, description="learning rate, in (0, 10]")
    optimizer: Literal["adam", "adamw", "sgd"] = Field(
        "adam", description="adam (weight_decay: L2 in the gradient), adamw (decoupled weight decay) or sgd"
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip: float | None = Field(
        None,
        gt=0.0,
        description="clip the gradients' global L2 norm to this before each step; None: no clipping",
    )
    schedule: Literal["cosine", "none"] = "cosine"
    warmup_epochs: int = Field(
        0,
        ge=0,
        le=100000,
        description="raise the learning rate linearly over the first N epochs, then the schedule",
    )
    loss: Literal["mean", "per_step"] = Field("mean", description="CE on mean logits, or at every step")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="ε: cross-entropy against (1 - ε)·one-hot + ε/classes; 0: none"
    )
    mixup_alpha: float = Field(
        0.0, ge=0.0, le=100.0, description="mixup of each training batch, λ ~ Beta(α, α); 0: none"
    )
    cutmix_alpha: float = Field(
        0.0, ge=0.0, le=100.0, description="CutMix of each training batch, λ ~ Beta(α, α); 0: none"
    )
    spike_reg: float = Field(
        0.0,
        ge=0.0,
        description="λ of the spike-rate penalty: loss + λ·(mean spikes per neuron per step), spiking variants",
    )
    tet_lambda: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="TET's λ, with loss: per_step: (1 - λ)·loss + λ·MSE(logits, tet_means); 0: none",
    )
    tet_means: float = Field(1.0, description="TET's φ: the value its MSE term pulls every logit towards")
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("tet_lambda")
    @classmethod
    def _tet_goes_with_per_step(cls, v: float, info: ValidationInfo) -> float:
        loss = info.data.get("loss")
        if v > 0 and loss != "per_step":
            raise ValueError(
                f"TET's MSE term goes with loss: per_step (its cross-entropy term), got loss: {loss}"
            )
        return v


RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class _RunConfig(_Section):
    """The fields of a run config that are not a stage's section (see :data:`RunConfig`)."""

    # A section of a stage registered after RunConfig was built is validated by
    # _late_sections and kept as an extra field; any other unknown key is refused there.
    model_config = ConfigDict(extra="allow")

    name: str | None = Field(
        None, description="run folder output_dir/<name>; None: '<data.name>-<model.name>'"
    )
    seed: int = Field(0, ge=0, lt=MAX_INT, description="seed of every random draw, 0 <= seed < 2**63")
    output_dir: str = Field("runs", description="folder that holds the run folders")
    stages: list[str] = Field(default_factory=lambda: list(DEFAULT_STAGES), min_length=1)
    task: str = Field(
        "classification", description="what the run learns: classification | lm (spikecim.tasks)"
    )
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return legacy_variants(data) if isinstance(data, dict) else data

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """A language-modelling run without a data set or model reads the embedded ``pydoc``
        corpus with ``transformer-tiny``."""
        if not isinstance(data, dict) or data.get("task") != "lm":
            return data
        data = dict(data)
        for key, default in (("data", "pydoc"), ("model", "transformer-tiny")):
            section = data.get(key)
            if section is None:
                data[key] = {"name": default}
            elif isinstance(section, dict) and "name" not in section:
                data[key] = {**section, "name": default}
        return data

    @field_validator("output_dir")
    @classmethod
    def _output_home(cls, v: str) -> str:
        return expand_home(v)

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        from spikecim.tasks import list_tasks

        if v not in list_tasks():
            raise ValueError(f"unknown task '{v}', allowed: {', '.join(list_tasks())}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _late_sections(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        sections = {k: s for k, s in stage_sections().items() if k not in cls.model_fields}
        for key in data:
            if key not in cls.model_fields and key not in sections:
                raise ValueError(f"{key}: unknown key")
        data = dict(data)
        for key, section in sections.items():
            try:
                data[key] = section.model_validate(data.get(key, {}))
            except ValidationError as e:
                raise ValueError(one_line_validation_error(e, prefix=f"{key}.")) from None
        return data

    @model_validator(mode="after")
    def _variants(self) -> RunConfig:
        from spikecim.models import has_float_weights, has_spiking_form, list_models, model_task

        if model_task(self.model.name) != self.task:
            raise ValueError(
                f"model.name: {self.model.name} is a {model_task(self.model.name)} model but the task is "
                f"{self.task}; allowed: {', '.join(list_models(self.task))}"
            )
        ptq = getattr(self, "ptq", None)
        if (
            "ptq" in self.stages
            and ptq is not None
            and ptq.enabled
            and not has_float_weights(self.model.name)
        ):
            raise ValueError(
                f"stages: the ptq stage has no weight layer to quantise in {self.model.name} (its BitLinear "
                "layers are ternary already); leave ptq out of the stages"
            )
        if self.task == "lm" and (self.train.mixup_alpha > 0 or self.train.cutmix_alpha > 0):
            raise ValueError("train.mixup_alpha: the lm task reads text; mixup and CutMix are for images")
        if self.task == "lm" and self.data.augment:
            raise ValueError(
                "data.augment: the lm task reads text; augmentation is for images and event frames"
            )
        if self.task == "lm" and self.train.loss != "mean":
            raise ValueError(
                f"train.loss: the lm task trains on the mean next-token cross-entropy, got '{self.train.loss}'"
            )
        if "variants" not in self.model_fields_set and not has_spiking_form(self.model.name):
            # the default list without the spiking variant: this model has only an ANN form
            object.__setattr__(self, "variants", [v for v in self.variants if not v.spiking])
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variants: the name '{dup[0]}' is used twice")
        if self.baseline not in names:
            if "baseline" in self.model_fields_set:
                raise ValueError(f"baseline: unknown variant '{self.baseline}', allowed: {', '.join(names)}")
            # The default names the ANN twin; without one the first variant is the baseline.
            ann = next((v.name for v in self.variants if not v.spiking), names[0])
            object.__setattr__(self, "baseline", ann)
        from spikecim.methods import check_combination, list_methods

        for i, v in enumerate(self.variants):
            for m in v.methods:
                if m.name not in list_methods():
                    allowed = ", ".join(list_methods()) or "none registered"
                    raise ValueError(f"variants.{i}.methods: unknown method '{m.name}', allowed: {allowed}")
            try:
                check_combination(v.methods, v.name)
            except SpikecimError as e:
                raise ValueError(f"variants.{i}.methods: {e}") from None
            _check_section(
                NeuronConfig, {**self.model.neuron.model_dump(), **v.neuron}, f"variants.{i}.neuron."
            )
            _check_section(TrainConfig, self._train_values(v), f"variants.{i}.train.")
        for v in self.hardware.variants or []:
            if v not in names:
                raise ValueError(f"hardware.variants: unknown variant '{v}', allowed: {', '.join(names)}")
        return self

    def variant(self, name: str) -> VariantConfig:
        for v in self.variants:
            if v.name == name:
                return v
        raise SpikecimError(f"variant: unknown '{name}', allowed: {', '.join(v.name for v in self.variants)}")

    def timesteps_for(self, variant: VariantConfig) -> int:
        """T of a variant: its own, else data.timesteps when it spikes, 1 for an ANN."""
        if variant.timesteps is not None:
            return variant.timesteps
        return self.data.timesteps if variant.spiking else 1

    def neuron_for(self, variant: VariantConfig) -> NeuronConfig:
        """model.neuron with the variant's neuron settings over it."""
        return NeuronConfig.model_validate({**self.model.neuron.model_dump(), **variant.neuron})

    def train_for(self, variant: VariantConfig) -> TrainConfig:
        """The train section, the settings the variant's methods need over it (e.g. ``dt-snn``:
        ``loss: per_step``), and the variant's own training settings over those."""
        return TrainConfig.model_validate(self._train_values(variant))

    def _train_values(self, variant: VariantConfig) -> dict[str, Any]:
        from spikecim.methods import method_train_settings

        return {**self.train.model_dump(), **method_train_settings(variant.methods), **variant.train}

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("name") is None:
            lm = v.get("task") == "lm"
            data = _section_name(v.get("data"), "pydoc" if lm else "digits")
            model = _section_name(v.get("model"), "transformer-tiny" if lm else "convnet")
            v = dict(v, name=f"{data}-{model}")
        return v

    @field_validator("name")
    @classmethod
    def _run_name(cls, v: str) -> str:
        # One folder directly inside output_dir: no separators, no '.'/'..', not hidden.
        if not RUN_NAME.fullmatch(v):
            raise ValueError(
                f"'{v}' is not a run name: letters, digits, '.', '_' and '-', not starting with '.'"
            )
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[str]) -> list[str]:
        known = list_stages()
        for i, s in enumerate(v):
            if s not in known:
                raise ValueError(f"unknown stage '{s}', allowed: {', '.join(known)}")
            if s in v[:i]:
                raise ValueError(f"'{s}' is listed twice; each stage runs once per run")
        return v

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _build_run_config() -> type[_RunConfig]:
    """RunConfig: the fields above, a section per registered stage that has one (``analog``,
    ``hardware``, ``report``), then the variants and the baseline."""
    fields: dict[str, Any] = {
        name: (section, Field(default_factory=section)) for name, section in stage_sections().items()
    }
    fields["variants"] = (
        list[VariantConfig],
        Field(
            default_factory=default_variants,
            min_length=1,
            description="the versions of the network the run compares",
        ),
    )
    fields["baseline"] = (
        str,
        Field("ann", description="the variant ratios are against (<variant>_over_<baseline>)"),
    )
    return create_model("RunConfig", __base__=_RunConfig, __module__=__name__, __doc__=_RUN_DOC, **fields)


_RUN_DOC = """One run of ``spikecim run``: its name and folder, seed, stages, data, model,
training, a section per stage that has settings, the variants and the baseline."""
RunConfig = _build_run_config()


def _check_section(schema: type[BaseModel], values: dict, prefix: str) -> None:
    try:
        schema.model_validate(values)
    except ValidationError as e:
        raise ValueError(one_line_validation_error(e, prefix=prefix)) from None


def resolve_paths(data: dict, folder: Path) -> dict:
    """``data`` (a run config read from a file in ``folder``) with its relative file paths
    joined to ``folder``; anything that is not a path is left for validation to judge."""

    def here(value: Any, files_only: bool = True) -> Any:
        if not isinstance(value, str) or (files_only and not value.endswith((".yaml", ".yml"))):
            return value
        if not value or value.startswith("~") or Path(value).is_absolute():
            return value
        return str((folder / value).absolute())

    for section, key, files_only in (("analog", "preset", True), ("data", "root", False)):
        if isinstance(data.get(section), dict) and key in data[section]:
            data[section][key] = here(data[section][key], files_only)
    hardware = data.get("hardware")
    if isinstance(hardware, dict) and isinstance(hardware.get("archs"), list):
        hardware["archs"] = [here(a) for a in hardware["archs"]]
    return data


def written_over(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` written over it, nested sections key by key (a change that is
    a mapping keeps the section's other keys); neither argument is modified."""
    out = dict(base)
    for key, value in changes.items():
        inner = out.get(key)
        out[key] = (
            written_over(inner if isinstance(inner, dict) else {}, value)
            if isinstance(value, dict)
            else value
        )
    return out


def expand_home(path: str) -> str:
    """``path`` with a leading ``~`` or ``~user`` expanded as a shell expands it, so that no
    folder named ``~`` is ever made in the current one; a user without a home is refused."""
    if not path.startswith("~"):
        return path
    try:
        return str(Path(path).expanduser())
    except RuntimeError:
        raise ValueError(f"'{path}': no home folder for {path.split('/', 1)[0]}") from None


def _section_name(section: Any, default: str) -> str:
    """The ``name`` of a data or model section given as a dict or a built section."""
    if isinstance(section, dict):
        return str(section.get("name", default))
    return str(getattr(section, "name", default))


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(
    data: dict, overrides: list[str], resolve: Callable[[dict, list[str]], list] | None = None
) -> dict:
    """Apply ``section.field=value`` strings to a plain config dict (values parsed as YAML).

    A number indexes a list: one the config gives, else the list ``resolve(data, path)``
    returns, the one the run would use (:func:`load_config`: ``variants.0`` is the default
    ``snn``). Such overrides are applied after the others, so that list is resolved with every
    other setting given; without ``resolve`` they are refused, saying to set the whole list."""
    later = []
    for item in overrides:
        if "=" not in item:
            raise SpikecimError(f"--set: expected section.field=value, got '{item}'")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise SpikecimError(f"--set: '{key}' does not name a field (section.field=value)")
        depth = _unlisted(data, parts)
        if depth is None:
            _set(data, key, parts, value)
        elif resolve is None:
            raise SpikecimError(
                f"--set: '{key}' indexes {'.'.join(parts[:depth])}, which the config does not list; "
                f"set the whole list: --set '{'.'.join(parts[:depth])}=[...]'"
            )
        else:
            later.append((key, parts, value, depth))
    for key, parts, value, depth in later:
        if _unlisted(data, parts) == depth:
            _put(data, parts[:depth], resolve(data, parts[:depth]))
        _set(data, key, parts, value)
    return data


def _unlisted(data: dict, parts: list[str]) -> int | None:
    """How many of ``parts`` name a list the config does not give, which the next part
    indexes (``variants.0.timesteps`` on a config without ``variants``: 1); None otherwise."""
    node: Any = data
    for depth, p in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not (p.isdigit() and int(p) < len(node)):
                return None  # _set says what is wrong
            node = node[int(p)]
        elif isinstance(node, dict):
            if p.isdigit() and depth > 0 and not node:
                return depth
            node = node.get(p, {})
        else:
            return None
    return None


def _set(data: dict, key: str, parts: list[str], value: str) -> None:
    """``data`` at ``parts`` set to ``value`` parsed as YAML, the sections on the way made."""
    node: Any = data
    for depth, p in enumerate(parts[:-1]):
        if isinstance(node, list):  # an item of a list the config gives
            if not (p.isdigit() and int(p) < len(node)):
                items = f"items 0 to {len(node) - 1}" if node else "no items"
                raise SpikecimError(f"--set: '{key}': {'.'.join(parts[:depth])} has {items}, got '{p}'")
            node = node[int(p)]
        else:
            node = node.setdefault(p, {})
        if not isinstance(node, dict | list):
            raise SpikecimError(f"--set: '{key}' does not name a field")
    if isinstance(node, list):
        raise SpikecimError(f"--set: '{key}' names an item of a list, not a field")
    node[parts[-1]] = _parse_value(value)


def _put(data: dict, path: list[str], value: list) -> None:
    """``data`` at ``path`` (field names and list indices) set to ``value``."""
    node: Any = data
    for p in path[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    node[path[-1]] = value


def parse_method_spec(spec: str) -> dict[str, Any]:
    """``NAME[:key=value,...]`` as a method mapping ``{name, **options}``. Each value is YAML,
    as ``--set``'s, so a list is a flow sequence (``exclude=['0', '10']``): the options are split
    at the commas outside brackets, braces and quoted strings, and a value that is not YAML is
    refused in one line naming the option."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise SpikecimError(f"--method: expected NAME[:key=value,...], got '{spec}'")
    out: dict[str, Any] = {"name": name}
    for item in filter(None, (x.strip() for x in _split_options(rest))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SpikecimError(f"--method {name}: expected key=value, got '{item}'")
        try:
            out[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or type(e).__name__
            raise SpikecimError(
                f"--method {name}: {key.strip()}={value.strip()}: not a YAML value ({problem})"
            ) from None
    return out


def _split_options(text: str) -> list[str]:
    """``text`` split at the commas outside YAML's brackets, braces and quoted strings (a quote
    opens a string at the start of a value: after ``=``, ``[``, ``{``, ``,`` or ``:``)."""
    items, start, depth, quote, prev = [], 0, 0, "", ","
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1  # an escaped character
            elif c == quote and quote == "'" and text[i + 1 : i + 2] == "'":
                i += 1  # '' is a quote inside a single-quoted string
            elif c == quote:
                quote = ""
        elif c in "'\"" and prev in "=[{,:":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(depth - 1, 0)
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
        prev = prev if c.isspace() else c
        i += 1
    return [*items, text[start:]]


def add_method_variants(cfg: RunConfig, specs: list[str]) -> RunConfig:
    """``cfg`` with one more variant per ``NAME[:key=value,...]`` spec: the first spiking
    variant's settings with that method added after its own, named after the method
    (``dt-snn``; ``dt-snn-2`` for a second one of the same name)."""
    if not specs:
        return cfg
    data = cfg.model_dump(mode="json")
    first = next((v for v in data["variants"] if v["spiking"]), None)
    if first is None:
        raise SpikecimError("--method: the run has no spiking variant to add a method to")
    names = {v["name"] for v in data["variants"]}
    for spec in specs:
        method = parse_method_spec(spec)
        name, k = method["name"], 2
        while name in names:
            name, k = f"{method['name']}-{k}", k + 1
        names.add(name)
        data["variants"].append({**first, "name": name, "methods": [*first["methods"], method]})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix="config.")) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults), apply overrides, validate.

    Relative file paths written in the file (``analog.preset: xbar.yaml``, ``hardware.archs``
    entries ending in ``.yaml``, ``data.root``) are read from the file's folder; paths given
    in ``overrides`` stay relative to the current folder. An override may index a list the
    file does not give: ``variants.0.timesteps=8`` sets the first of the variants the run
    would have (by default ``snn``)."""
    data: dict = {}
    if path is not None:
        data = read_settings(
            path, "config", "of sections", "write the run's settings in it, or {} for the defaults"
        )
        data = resolve_paths(data, Path(path).parent)
    data = apply_overrides(data, overrides or [], resolve=_resolved_list)
    return _validated(data)


def _resolved_list(data: dict, path: list[str]) -> list:
    """The list at ``path`` of the run that ``data`` describes (the default's where ``data``
    gives none), each item written out in full."""
    node: Any = _validated(data).model_dump(mode="json")
    for p in path:
        if isinstance(node, list) and p.isdigit() and int(p) < len(node):
            node = node[int(p)]
        else:
            node = node.get(p) if isinstance(node, dict) else None
    if not isinstance(node, list):
        raise SpikecimError(f"--set: {'.'.join(path)} is not a list, so a number does not index it")
    return node


def _validated(data: dict) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix="config.")) from None
