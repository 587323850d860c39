"""Every score is a :class:`Metric`; ``get_metric(name)`` is the only way callers reach one.

This module is the only source of :class:`MetricInfo`: ``list_metrics()[name]`` and
``get_metric(name).info`` are the same object for every registered name (including
the weight-backed ``lpips``, ``dists`` and ``pieapp``, whose factory reads its info
here). Callers ask ``info.needs_model`` whether a metric needs a classifier, never
its name.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import torch
from torch import nn

INFINITY = math.inf


@dataclass(frozen=True)
class MetricInfo:
    """What a caller must know about a metric without running it.

    Attributes
    ----------
    name : str
    full_reference : bool
        Needs the reference image.
    higher_is_better : bool
    range : (float, float)
        The values the metric takes in practice (its natural range), not its
        mathematical bounds: ``advqa metrics`` prints it and the gate's default quality
        scale (:meth:`advqa.detect.features.QualityScale.default`) maps it to [0, 1].
        ``inf`` marks a metric without a practical upper end.
    differentiable : bool
        Gradients w.r.t. the distorted image are meaningful.
    description : str
    needs_model : bool
        Needs a classifier (``get_metric(name, model=...)``).
    release : str
        The original release the default reproduces (authors, file, input), as
        ``advqa metrics`` shows it; docs/metrics.md gives the details and the checks.
    """

    name: str
    full_reference: bool
    higher_is_better: bool
    range: tuple[float, float]
    differentiable: bool
    description: str
    needs_model: bool = False
    release: str = ""


class UnknownMetricError(KeyError):
    """A metric name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


class Metric(nn.Module):
    """A scored metric: ``metric(distorted, reference=None)`` → (N,) scores."""

    def __init__(self, info: MetricInfo, function, **options):
        super().__init__()
        self.info = info
        self.function = function
        self.options = options

    def forward(self, distorted: torch.Tensor, reference: torch.Tensor | None = None):
        if not self.info.full_reference:
            return self.function(distorted, **self.options)
        if reference is None:
            raise ValueError(f"{self.info.name} is full-reference: pass reference=")
        # By keyword: a functional's positional order can never swap the images.
        return self.function(reference=reference, distorted=distorted, **self.options)

    def extra_repr(self) -> str:
        return f"name={self.info.name!r}, options={self.options!r}"


# name → (info, "module:function"); modules are imported only when asked for.
_ENTRIES: dict[str, tuple[MetricInfo, str]] = {}
# Metrics with weights are built once by a factory, not wrapped per call.
_FACTORIES: dict[str, str] = {}
LEARNED_FACTORY = "advqa.quality.learned:load_learned_metric"
PYIQA_PREFIX = "pyiqa:"


def register(info: MetricInfo, target: str) -> None:
    """Add a metric; ``target`` is ``"package.module:function"``."""
    _ENTRIES[info.name] = (info, target)


def register_factory(info: MetricInfo, target: str) -> None:
    """Add a metric built by ``target(name, **options)``, which returns the Metric itself."""
    _ENTRIES[info.name] = (info, target)
    _FACTORIES[info.name] = target


def _load(target: str):
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _fr(name, higher, low, high, differentiable, description, target, release):
    register(MetricInfo(name, True, higher, (low, high), differentiable, description,
                        release=release), target)


def _nr(name, low, high, description, target, release):
    register(MetricInfo(name, False, False, (low, high), True, description,
                        release=release), target)


# "on rgb2gray": the release fed double(rgb2gray(imread(file))) of a uint8 file, i.e.
# grey levels rounded to integers (advqa.quality.matlab.release_grey).
_fr("psnr", True, 0.0, INFINITY, True, "peak signal-to-noise ratio, dB",
    "advqa.quality.classical:psnr",
    "MATLAB psnr on all RGB channels")
_fr("ssim", True, 0.0, 1.0, True, "structural similarity",
    "advqa.quality.classical:ssim",
    "ssim_index.m (Wang et al. 2004) on rgb2gray")
_fr("ms_ssim", True, 0.0, 1.0, True, "multi-scale SSIM",
    "advqa.quality.classical:ms_ssim",
    "msssim.m (Wang et al. 2003) on rgb2gray")
_fr("cw_ssim", True, 0.0, 1.0, True, "complex wavelet SSIM", "advqa.quality.cw_ssim:cw_ssim",
    "cwssim_index.m (Sampat et al. 2009), 4 scales, 8 orientations, on rgb2gray")
_fr("fsim", True, 0.0, 1.0, True, "feature similarity (FSIMc on colour)",
    "advqa.quality.classical:fsim",
    "FeatureSIM.m (Zhang et al. 2011), FSIMc on RGB")
_fr("gmsd", False, 0.0, 0.35, True, "gradient magnitude similarity deviation",
    "advqa.quality.classical:gmsd",
    "GMSD.m (Xue et al. 2014) on rgb2gray")
# VIF is 1 for identical images and exceeds 1 only for contrast enhancement.
_fr("vif", True, 0.0, 1.0, True, "visual information fidelity (wavelet domain)",
    "advqa.quality.vif:vif",
    "vifvec.m (Sheikh & Bovik 2006) on rgb2gray")
_fr("vifp", True, 0.0, 1.0, True, "visual information fidelity, pixel domain (VIFp)",
    "advqa.quality.vif:vifp",
    "vifp_mscale.m (Sheikh & Bovik 2006) as piq.vif_p, unrounded grey")
_fr("vsi", True, 0.0, 1.0, True, "visual saliency-induced index",
    "advqa.quality.vsi:vsi",
    "VSI.m (Zhang et al. 2014) on RGB")
_fr("mad", False, 0.0, 200.0, True, "most apparent distortion", "advqa.quality.mad:mad",
    "MAD_index.m (Larson & Chandler 2010; 2011 release) on rgb2gray")
# NIQE is a distance to a pristine model: 0 is a perfect match and nothing bounds it
# above, but natural photos score about 2–8 and heavy distortion about 10–20, so its
# practical range is (0, 20). (0, 100) would squash every photo into the top fifth of
# the gate's quality scale, which has normalised NIQE by (0, 20) from the start.
_nr("niqe", 0.0, 20.0, "naturalness image quality evaluator (MATLAB niqe_release)",
    "advqa.quality.niqe:niqe",
    "computequality.m (Mittal et al. 2013; niqe_release) on rgb2gray")
# BRISQUE's SVR predicts LIVE DMOS: about 0 (best) to 100 (worst); it may leave it a little.
_nr("brisque", 0.0, 100.0, "BRISQUE, LIVE-trained SVR (MATLAB BRISQUE_release)",
    "advqa.quality.brisque:brisque",
    "brisquescore.m (Mittal et al. 2012; BRISQUE_release) on rgb2gray")
# PIQE is a percentage: (0, 100) by construction.
_nr("piqe", 0.0, 100.0, "perception-based image quality evaluator", "advqa.quality.piqe:piqe",
    "MATLAB piqe.m (Venkatanath et al. 2015)")
# DTNIQ-f predicts a normalised quality: the expected class of its 70-class head, (0, 1).
register(MetricInfo("dtniq", False, True, (0.0, 1.0), True,
                    "DTNIQ-f proxy: learned NR quality on frozen EfficientNet-Lite0 features, "
                    "trained on constructed VIF labels, not human scores",
                    release="advqa dtniq-f-proxy (DTNIQ-f design of Feng & Cai; "
                    "data/dtniq-f-proxy.json records its training)"),
         "advqa.quality.dtniq:dtniq")
register(MetricInfo("dtniq_fmnist", False, True, (0.0, 1.0), True,
                    "DTNIQ-f proxy for 28×28 Fashion-MNIST: learned NR quality on the frozen "
                    "Fashion-MNIST CNN's features, trained on constructed SSIM labels, "
                    "not human scores",
                    release="advqa dtniq-f-proxy-fmnist (DTNIQ-f design of Feng & Cai; "
                    "data/dtniq-f-proxy-fmnist.json records its training)"),
         "advqa.quality.dtniq:dtniq_fmnist")
register_factory(MetricInfo("lpips", True, False, (0.0, 1.0), True,
                            "LPIPS v0.1, VGG16 (piq; weights on disk)",
                            release="PerceptualSimilarity lpips v0.1 (Zhang et al. 2018)"),
                 LEARNED_FACTORY)
register_factory(MetricInfo("dists", True, False, (0.0, 1.0), True,
                            "DISTS distance, 1 − similarity (piq; weights on disk)",
                            release="DISTS_pytorch (Ding et al. 2020)"),
                 LEARNED_FACTORY)
# PieAPP's error has no upper bound (≥ 0 in practice).
register_factory(MetricInfo("pieapp", True, False, (0.0, INFINITY), True,
                            "PieAPP error (piq; weights on disk)",
                            release="PieAPP v0.1 (Prashnani et al. 2018)"),
                 LEARNED_FACTORY)
_fr("l0", False, 0.0, INFINITY, False, "changed pixel positions", "advqa.quality.lp:l0",
    "definition")
_fr("l1", False, 0.0, INFINITY, True, "L1 distance", "advqa.quality.lp:l1",
    "definition")
_fr("l2", False, 0.0, INFINITY, True, "L2 distance", "advqa.quality.lp:l2",
    "definition")
_fr("linf", False, 0.0, 1.0, True, "L∞ distance", "advqa.quality.lp:linf",
    "definition")
_fr("advdss", True, 0.0, 1.0, True, "AdvDSS: saliency + exponent SSIM (ours)",
    "advqa.quality.advdss:advdss",
    "advqa (AdvDSS, the AEQA paper)")
register(MetricInfo("aeqa", True, True, (0.0, 1.0), True,
                    "AEQA: AdvDSS × JS divergence of the classifier (ours)", needs_model=True,
                    release="advqa (the AEQA paper)"),
         "advqa.quality.aeqa:aeqa_metric")
register(MetricInfo("js", True, True, (0.0, 1.0), True,
                    "attack intensity: JS divergence of the classifier's outputs (AEQA's D_JS)",
                    needs_model=True, release="advqa (the AEQA paper)"),
         "advqa.quality.aeqa:js_metric")


def list_metrics() -> dict[str, MetricInfo]:
    """Every registered metric: name → :class:`MetricInfo`, in registry order.

    The dict is a fresh copy: changing it does not change the registry.
    """
    return {name: info for name, (info, _) in _ENTRIES.items()}


def is_available(name: str) -> bool:
    """Whether the metric can run here: its code imports and its weights are on disk."""
    try:
        _load(_ENTRIES[name][1])
    except (ImportError, AttributeError):
        return False
    if name in _FACTORIES:
        from advqa.quality.learned import list_learned_metrics

        return any(row.info.name == name and not row.missing for row in list_learned_metrics())
    return True


def get_metric(name: str, **options) -> Metric:
    """The metric called ``name``, with keyword options (e.g. ``data_range``, ``model``).

    ``lpips``, ``dists`` and ``pieapp`` load their weights from disk once, here;
    ``pyiqa:<name>`` reaches any pyiqa metric when that optional package is installed.

    Raises
    ------
    UnknownMetricError
        For an unknown name; the message lists the valid ones.
    """
    if name.startswith(PYIQA_PREFIX):
        return _load(LEARNED_FACTORY)(name, **options)
    if name not in _ENTRIES:
        raise UnknownMetricError(
            f"unknown metric {name!r}; valid names: {', '.join(_ENTRIES)}, "
            f"{PYIQA_PREFIX}<name> (optional pyiqa)")
    info, target = _ENTRIES[name]
    if name in _FACTORIES:
        return _load(target)(name, **options)
    if info.needs_model and options.get("model") is None:
        raise ValueError(f"{name} needs a classifier: get_metric({name!r}, model=...)")
    return Metric(info, _load(target), **options)
