"""The single model factory: a timm backbone with its pooling and a registered head (seed 000:
global average pooling and one linear layer, Section III.B.a), with pretrained weights from a
named source. A model is data (:class:`ModelSpec`, saved as a run's model spec), so any run
folder's model can be rebuilt with :func:`load_run_model`."""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import timm
import torch
from torch import nn

from .. import run_folder as rf
from ..utils import atomic_torch_save, atomic_write_json, medtl_cache_dir
from . import weights as W

# heads and poolings are registries of their own (models/heads.py, models/pools.py); the factory
# needs no RunConfig (config.py asks these registries, so there is no import cycle)
from .heads import HEADS, Head, HeadBuilder, available_heads, head_class, register_head  # noqa: F401

# the names live apart, without torch or timm, so the CLI answers a typo at once
from .names import ALIASES, PRESETS, ModelPreset, resolve_model_name  # noqa: F401
from .pools import POOLS, Pool  # noqa: F401


def head_builder(name: str) -> HeadBuilder:
    """``builder(in_features, num_classes, **head_args)`` of the head called ``name``."""
    return head_class(name).build


def _pool_class(pool: str) -> type[Pool]:
    if pool not in POOLS:
        raise ValueError(f"Unknown pool '{pool}'; choose one of {', '.join(POOLS.available())}")
    return POOLS.get(pool)


# --- the classifier ------------------------------------------------------------------------------
class Classifier(nn.Module):
    """backbone (timm, with its pooling) -> head; state_dict keys ``backbone.*`` and ``head.*``.

    ``pool`` says how the backbone was built (see :func:`backbone_kwargs`), since the pooling is
    timm's own and lives inside the backbone:

    - ``avg`` (seed 000): timm ``global_pool='avg'`` - mean over H x W for CNNs, mean over tokens
      for ViT as the paper defines z; for ConvNeXt, timm keeps its pretrained LayerNorm after the
      pool.
    - ``token``: timm ``global_pool='token'`` - the ViT class token (ValueError without one).
    - ``flatten``: timm ``global_pool=''`` (the unpooled feature map / all tokens) flattened by a
      forward hook on the backbone, so ``backbone(x)`` is still exactly the head's input (the
      feature cache relies on that). The head's in-features come from one dummy forward at
      ``img_size`` (default: the backbone's pretrained input size), so such a model only accepts
      inputs of that size.
    - ``avg_raw`` (seed 002's baselines): the mean of ``forward_features`` over positions (a CNN)
      or non-prefix tokens (a ViT), without the pooled head norm timm's ``avg`` keeps for
      ConvNeXt; for a ResNet it equals ``avg``.
    - ``tokens`` (seed 002's CDTM): ``forward_features`` as a (B, p, d) token sequence - a ViT's
      patch tokens after its final norm without the prefix (class) tokens, a CNN's last feature
      map flattened to h*w tokens (before any head norm). For heads that take tokens (``cdtm``);
      they get ``num_tokens`` = p, probed at ``img_size`` like ``flatten``.

    ``head`` names a builder of the head registry (``linear``: ``nn.Linear``, as in seed 000).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, pool: str = "avg",
                 head: str = "linear", head_args: dict | None = None,
                 img_size: int | None = None) -> None:
        super().__init__()
        pooling = _pool_class(pool)
        head_cls = head_class(head)  # fail before any work on an unknown head
        self.backbone = backbone
        self.pool = pool
        self.head_name = head
        self.head_args = dict(head_args or {})
        self._num_classes = num_classes
        if pooling.gives_tokens and not head_cls.takes_tokens:
            raise ValueError(f"pool={pool!r} gives a (batch, tokens, dim) sequence, which head "
                             f"'{head}' does not take; use a token head (head='cdtm')")
        self.in_features, extra = pooling.attach(backbone, img_size)
        if head_cls.takes_tokens and not pooling.gives_tokens:
            raise ValueError(f"head '{head}' takes a token sequence: build it with pool='tokens'")
        try:
            self.head = head_cls.build(self.in_features, num_classes, **extra, **self.head_args)
        except TypeError as exc:  # an argument the head does not have
            raise ValueError(f"head '{head}' with head_args {self.head_args}: {exc}") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    @property
    def num_classes(self) -> int:
        return self._num_classes


def backbone_kwargs(timm_name: str, pool: str = "avg", img_size: int | None = None) -> dict:
    """``timm.create_model`` kwargs of a headless backbone whose output a Classifier head takes."""
    kwargs: dict = {"num_classes": 0, "global_pool": _pool_class(pool).timm_pool}
    if img_size is not None and _fixed_input_size(timm_name):
        kwargs["img_size"] = img_size
    return kwargs


# --- the model as data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a run's model without its training config (saved in the run folder).

    ``surgery`` lists structural edits applied after the backbone is built (later: truncate, slim);
    ``img_size`` is the input size the model was built for.
    """
    name: str  # as requested (preset or timm name)
    timm_name: str
    num_classes: int
    img_size: int | None = None
    pool: str = "avg"
    head: str = "linear"
    head_args: dict = field(default_factory=dict)
    surgery: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:  # a newer kit's spec: better refused than rebuilt into another model
            raise ValueError(f"model spec has unknown fields {unknown}; known: {names}")
        missing = [n for n in ("name", "timm_name", "num_classes") if n not in d]
        if missing:
            raise ValueError(f"model spec lacks the fields {missing}")
        return cls(**copy.deepcopy(d))


@dataclass
class ModelInfo:
    name: str  # as requested
    timm_name: str
    weights_source: str  # 'hub', 'hub-cache:<path>', 'offline:<package>', 'file:<path>', 'none'
    data_config: dict
    spec: ModelSpec | None = None  # always set by create_model / build_model


def create_model(name: str, num_classes: int, weights: str = "auto", img_size: int | None = None,
                 pool: str = "avg", head: str = "linear", head_args: dict | None = None,
                 surgery: list[dict] | None = None) -> tuple[Classifier, ModelInfo]:
    """Build the classifier; ``weights`` is 'auto', 'none' or a path to a state-dict file.

    ``pool`` and ``head`` (with ``head_args``) are as in :class:`Classifier`; the defaults are
    seed 000's model, key for key. ``surgery`` (models/surgery.py) follows the preset's own, applied
    to the backbone after its weights are loaded (a strategy's cut or slimming, seed 003).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    timm_name, preset = resolve_model_name(name)
    spec = ModelSpec(name, timm_name, num_classes, img_size, pool, head, dict(head_args or {}),
                     [dict(op) for op in (*(preset.surgery if preset else ()), *(surgery or ()))])
    return build_model(spec, weights)


def build_model(spec: ModelSpec, weights: str = "auto") -> tuple[Classifier, ModelInfo]:
    """Build the classifier a spec describes. ``info.spec`` has ``img_size`` filled in (the
    backbone's default input size when the spec left it open); the model also carries it as
    ``model.spec``."""
    if spec.num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {spec.num_classes}")
    from .surgery import OPS, apply_surgery

    unknown = [op.get("op") for op in spec.surgery if op.get("op") not in OPS]
    if unknown:  # before any weights are fetched
        raise NotImplementedError(f"model surgery {unknown} is not supported by this version of "
                                  f"medtl_lib (known: {', '.join(OPS)})")
    head_class(spec.head)
    timm_name, img_size = spec.timm_name, spec.img_size
    kwargs = backbone_kwargs(timm_name, spec.pool, img_size)
    _pool_class(spec.pool).check_model(timm_name, kwargs)
    own_ckpt = None
    if weights == "none":
        backbone, source = timm.create_model(timm_name, pretrained=False, **kwargs), "none"
    elif weights == "auto":
        backbone, source = _auto(timm_name, kwargs)
    else:
        sd = W.load_checkpoint_file(weights)
        if any(k.startswith("backbone.") for k in sd):
            own_ckpt = sd  # a MedTL checkpoint: load after the head exists
            backbone = timm.create_model(timm_name, pretrained=False, **kwargs)
        else:
            backbone = _from_file(timm_name, kwargs, str(weights))
        source = f"file:{weights}"
    backbone = apply_surgery(backbone, spec.surgery)
    model = Classifier(backbone, spec.num_classes, spec.pool, spec.head, spec.head_args, img_size)
    if own_ckpt is not None:
        load_model_state(model, own_ckpt, what=str(weights))
    data_config = timm.data.resolve_data_config({}, model=backbone)
    if img_size is not None:
        data_config["input_size"] = (3, img_size, img_size)
    spec = replace(spec, img_size=int(data_config["input_size"][-1]))
    model.spec = spec
    return model, ModelInfo(spec.name, timm_name, source, data_config, spec)


# --- run folders ---------------------------------------------------------------------------------
MODEL_JSON = rf.MODEL_SPEC


def save_model_spec(spec: ModelSpec, run_dir: str | Path) -> Path:
    """Write the run folder's model spec (atomically), so the run's model can be rebuilt from it alone."""
    return atomic_write_json(Path(run_dir) / MODEL_JSON, spec.to_dict())


def load_run_model(run_dir: str | Path, device: str | torch.device = "cpu",
                   ) -> tuple[Classifier, ModelSpec, dict]:
    """The trained model (theta*) of a run folder, in eval mode, with its spec and
    the checkpoint's metadata (class_names, epoch, img_size, data_config, ... where present).

    The architecture comes from the model spec; run folders written before it existed fall back
    to the config (model, img_size) and the checkpoint (timm_name, class_names). Building does not
    disturb the caller's random number stream.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    best = run / rf.BEST
    if not best.is_file():
        have = ", ".join(sorted(p.name for p in run.iterdir())[:8]) or "nothing"
        raise FileNotFoundError(
            f"{best} is missing, so {run} has no trained weights (it holds: {have}). A run writes "
            f"{rf.BEST} after its first complete epoch: finish it (rerun the same `medtl train ... "
            f"--out {run}` command, which resumes) or pass another run folder.")
    from ..checkpoint_files import load_checkpoint

    state = load_checkpoint(best)  # its digest checked: a damaged file is named
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{best} is not a MedTL checkpoint (no 'model' state_dict in it)")
    spec_file = run / MODEL_JSON
    if spec_file.is_file():
        try:
            spec = ModelSpec.from_dict(json.loads(spec_file.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{spec_file} is not a valid model spec: {exc}") from None
    else:
        spec = _spec_of_old_run(run, state)
    with torch.random.fork_rng(devices=[]):
        model, info = build_model(spec, weights="none")
    load_model_state(model, state["model"], what=str(best))
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k != "model"}
    return model, info.spec, meta


def _spec_of_old_run(run: Path, state: dict) -> ModelSpec:
    """A run folder from before model specs: seed 000's model (avg pool, linear head)."""
    cfg = rf.read_config(run)
    name = cfg.get("model") or state.get("timm_name")
    if not name:
        raise FileNotFoundError(
            f"{run} has neither {MODEL_JSON} nor {rf.CONFIG}, and {rf.BEST} does not record "
            f"timm_name, so the architecture is unknown. Copy the run's {rf.CONFIG} (or a "
            f"{MODEL_JSON} written by save_model_spec) into the folder.")
    timm_name = state.get("timm_name") or resolve_model_name(name)[0]
    img_size = cfg.get("img_size") or state.get("img_size")
    if state.get("class_names"):
        num_classes = len(state["class_names"])
    elif "head.weight" in state["model"]:
        num_classes = int(state["model"]["head.weight"].shape[0])
    else:
        raise ValueError(f"{run / rf.BEST} has no class_names and no head.weight: cannot tell "
                         f"the number of classes; add a {MODEL_JSON}")
    return ModelSpec(str(name), timm_name, num_classes, int(img_size) if img_size else None)


def load_model_state(model: Classifier, state: dict[str, torch.Tensor], what: str) -> None:
    """Load a MedTL checkpoint, refusing one made for another model or class count."""
    mine = model.state_dict()
    missing = [k for k in mine if k not in state]
    unexpected = [k for k in state if k not in mine]
    wrong = [k for k in mine if k in state and state[k].shape != mine[k].shape]
    if missing or unexpected or wrong:
        detail = []
        if "head.weight" in wrong:
            detail.append(f"it was trained for {state['head.weight'].shape[0]} classes, this model "
                          f"has {model.num_classes}")
        if missing or unexpected:
            detail.append(f"{len(missing)} missing and {len(unexpected)} unexpected tensors "
                          f"(e.g. {(missing + unexpected)[0]}) - it is from another architecture")
        elif wrong and "head.weight" not in wrong:
            detail.append(f"{len(wrong)} tensors have other shapes (e.g. {wrong[0]})")
        raise W.WeightsNotAvailableError(f"checkpoint {what} does not fit this model: "
                                         + "; ".join(detail))
    model.load_state_dict(state)


def _fixed_input_size(timm_name: str) -> bool:
    cfg = timm.models.get_pretrained_cfg(timm_name)
    return bool(cfg and cfg.fixed_input_size)


def _auto(timm_name: str, kwargs: dict) -> tuple[nn.Module, str]:
    cached = W.cached_hub_file(timm_name)
    if cached:
        return _from_file(timm_name, kwargs, cached), f"hub-cache:{cached}"
    if W.hub_reachable():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return timm.create_model(timm_name, pretrained=True, **kwargs), "hub"
        except Exception as exc:  # network flaked between probe and download
            hub_error = f"{type(exc).__name__}: {exc}"
    else:
        hub_error = "the Hugging Face hub is not reachable from this machine"
    offline = W.offline_weights(timm_name.split(".")[0])
    if offline is not None:
        path = _offline_cache_path(timm_name)
        if not path.is_file():
            try:
                atomic_torch_save(path, offline)
            except OSError as exc:  # converted again next time; the run itself is unharmed
                warnings.warn(f"the converted offline weights cannot be kept in {path.parent} "
                              f"({exc.strerror or exc}); they are converted again next time. Set "
                              "MEDTL_CACHE_DIR to a writable folder to keep them.", stacklevel=2)
                import tempfile

                with tempfile.TemporaryDirectory(prefix="medtl-weights-") as tmp:
                    path = Path(tmp) / path.name
                    torch.save(offline, path)
                    model = _from_file(timm_name, kwargs, str(path))
                return model, f"offline:{W.OFFLINE_PACKAGES[timm_name]}"
        return _from_file(timm_name, kwargs, str(path)), f"offline:{W.OFFLINE_PACKAGES[timm_name]}"
    raise W.WeightsNotAvailableError(f"{W.how_to_supply(timm_name)}\n(hub: {hub_error})")


def _offline_cache_path(timm_name: str) -> Path:
    return medtl_cache_dir("weights") / f"{timm_name}.offline.pth"


def _from_file(timm_name: str, kwargs: dict, path: str) -> nn.Module:
    try:
        return timm.create_model(timm_name, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=path), **kwargs)
    except RuntimeError as exc:
        raise W.WeightsNotAvailableError(
            f"weights file {path} does not fit timm model '{timm_name}': {str(exc)[:400]}") from None
