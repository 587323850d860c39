"""VSFA and MDTVSFA adapters: local weights only, clear errors, parity with the releases.

The real weight files are not here, so the tests save stand-ins with the official key names
and shapes (seeded random values; the key table below is written out from the releases'
model classes, independently of the adapter) and a random torchvision ResNet-50. Parity:
the releases' feature extraction (``CNNfeatures.py``: ResNet-50 children up to layer4,
adaptive average pooling and ``torch.std`` over the flattened map) and heads (``VSFA.py``,
``VQAmodel.py``: linear layer, GRU, per-frame linear, the max/avg-pool formulation of the
temporal pooling with its q = 10000 padding) are transcribed here with plain tensor ops (the
GRU written out gate by gate) and compared with the adapter on the same inputs.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from advqa.models import MissingWeightsError
from advqa.quality import vqa_learned
from advqa.quality.registry import MetricInfo
from advqa.quality.vqa_learned import VIDEO_LEARNED, load_vqa_metric

torch.set_num_threads(1)

# Official state-dict layouts (lidq92/VSFA VSFA.py class VSFA; lidq92/MDTVSFA VQAmodel.py
# class VQAModel with its default datasets K, C, L, N).
VSFA_KEYS = {
    "ann.fc0.weight": (128, 4096), "ann.fc0.bias": (128,),
    "ann.fc.weight": (128, 128), "ann.fc.bias": (128,),
    "rnn.weight_ih_l0": (96, 128), "rnn.weight_hh_l0": (96, 32),
    "rnn.bias_ih_l0": (96,), "rnn.bias_hh_l0": (96,),
    "q.weight": (1, 32), "q.bias": (1,),
}
MDTVSFA_KEYS = {
    "dimemsion_reduction.weight": (128, 4096), "dimemsion_reduction.bias": (128,),
    "feature_aggregation.weight_ih_l0": (96, 128), "feature_aggregation.weight_hh_l0": (96, 32),
    "feature_aggregation.bias_ih_l0": (96,), "feature_aggregation.bias_hh_l0": (96,),
    "regression.weight": (1, 32), "regression.bias": (1,),
    "nlm.0.weight": (1, 1), "nlm.0.bias": (1,), "nlm.2.weight": (1, 1), "nlm.2.bias": (1,),
    **{f"lm.{d}.{p}": ((1, 1) if p == "weight" else (1,)) for d in "KCLN"
       for p in ("weight", "bias")},
}
TOLERANCE = 1e-5



def _random_head(keys: dict, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {key: 0.1 * torch.randn(shape, generator=generator) for key, shape in keys.items()}
    if "nlm.0.weight" in state:  # roughly what training leaves there
        state["nlm.0.weight"] = torch.tensor([[3.5]])
        state["nlm.2.weight"], state["nlm.2.bias"] = torch.ones(1, 1), torch.zeros(1)
        for dataset, (scale, low) in {"K": (3.4, 1.2), "C": (100.0, -6.5), "L": (57.0, 16.6),
                                      "N": (88.0, 6.2)}.items():
            state[f"lm.{dataset}.weight"] = torch.tensor([[scale]])
            state[f"lm.{dataset}.bias"] = torch.tensor([low])
    return state


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Random official-layout files: heads under their official names, ResNet-50 under a
    name without a digest (its bytes are not torchvision's)."""
    from torchvision.models import resnet50

    directory = tmp_path_factory.mktemp("vqa_stand_ins")
    torch.manual_seed(0)
    resnet = resnet50(weights=None).eval()
    torch.save(resnet.state_dict(), directory / "resnet50-random.pth")
    torch.save(_random_head(VSFA_KEYS, 1), directory / "VSFA.pt")
    torch.save(_random_head(MDTVSFA_KEYS, 2), directory / "MDTVSFA.pt")
    return directory


@pytest.fixture(scope="module")
def metrics(stand_ins):
    return {name: load_vqa_metric(name, weights=stand_ins / file,
                                  backbone=stand_ins / "resnet50-random.pth", device="cpu")
            for name, file in (("vsfa", "VSFA.pt"), ("mdtvsfa", "MDTVSFA.pt"))}


def _videos(count=2, frames=3, size=64, seed=3):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, frames, 3, size, size, generator=generator)


# ------------------------------------------------ the releases, transcribed independently
def official_features(frames: torch.Tensor, resnet_state: dict) -> torch.Tensor:
    """CNNfeatures.py: Normalize, ResNet-50 children[:-2], mean and std of res5c."""
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    net.load_state_dict(resnet_state)
    body = torch.nn.Sequential(*list(net.children())[:-2]).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = body((frames - mean) / std)
    features_mean = F.adaptive_avg_pool2d(x, 1)
    features_std = torch.std(x.view(x.size(0), x.size(1), -1, 1), dim=2, keepdim=True)
    return torch.cat((features_mean, features_std), 1).squeeze(-1).squeeze(-1)


def gru_by_hand(x: torch.Tensor, prefix: str, state: dict) -> torch.Tensor:
    """PyTorch's GRU equations (gates r, z, n stacked in that order), zero initial state;
    x is (T, 128), returns (T, 32)."""
    w_ih, w_hh = state[f"{prefix}.weight_ih_l0"], state[f"{prefix}.weight_hh_l0"]
    b_ih, b_hh = state[f"{prefix}.bias_ih_l0"], state[f"{prefix}.bias_hh_l0"]
    h = torch.zeros(w_hh.shape[1])
    outputs = []
    for x_t in x:
        gi, gh = w_ih @ x_t + b_ih, w_hh @ h + b_hh
        i_r, i_z, i_n = gi.chunk(3)
        h_r, h_z, h_n = gh.chunk(3)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs)


def official_tp(q: torch.Tensor, tau: int = 12, beta: float = 0.5) -> torch.Tensor:
    """VSFA.py's TP on a (T, 1) column, then the mean, as VSFA.forward does."""
    q = torch.unsqueeze(torch.t(q), 0)
    qm = -float("inf") * torch.ones((1, 1, tau - 1))
    qp = 10000.0 * torch.ones((1, 1, tau - 1))
    low = -F.max_pool1d(torch.cat((qm, -q), 2), tau, stride=1)
    m = F.avg_pool1d(torch.cat((q * torch.exp(-q), qp * torch.exp(-qp)), 2), tau, stride=1)
    n = F.avg_pool1d(torch.cat((torch.exp(-q), torch.exp(-qp)), 2), tau, stride=1)
    return torch.mean(beta * (m / n) + (1 - beta) * low)


def official_vsfa(features: torch.Tensor, state: dict) -> torch.Tensor:
    """VSFA.forward on one clip's (T, 4096) features (ANN with one layer: fc0 only)."""
    x = features @ state["ann.fc0.weight"].t() + state["ann.fc0.bias"]
    hidden = gru_by_hand(x, "rnn", state)
    q = hidden @ state["q.weight"].t() + state["q.bias"]
    return official_tp(q)


def official_mdtvsfa(features: torch.Tensor, state: dict) -> dict[str, torch.Tensor]:
    """VQAModel.forward on one clip: relative, mapped and the aligned scores."""
    x = features @ state["dimemsion_reduction.weight"].t() + state["dimemsion_reduction.bias"]
    hidden = gru_by_hand(x, "feature_aggregation", state)
    q = hidden @ state["regression.weight"].t() + state["regression.bias"]
    relative = torch.sigmoid(official_tp(q))
    inner = torch.sigmoid(state["nlm.0.weight"][0, 0] * relative + state["nlm.0.bias"][0])
    mapped = state["nlm.2.weight"][0, 0] * inner + state["nlm.2.bias"][0]
    scores = {"relative": relative, "mapped": mapped}
    for dataset in "KCLN":
        scores[dataset] = (state[f"lm.{dataset}.weight"][0, 0] * mapped
                           + state[f"lm.{dataset}.bias"][0])
    return scores


# ------------------------------------------------------------------------------- tests
def test_official_key_tables_match_the_adapters_heads():
    vsfa = vqa_learned.VSFAHead().state_dict()
    mdtvsfa = vqa_learned.MDTVSFAHead().state_dict()
    assert {k: tuple(v.shape) for k, v in vsfa.items()} == VSFA_KEYS
    assert {k: tuple(v.shape) for k, v in mdtvsfa.items()} == MDTVSFA_KEYS


@pytest.mark.parametrize("name", ["vsfa", "mdtvsfa"])
def test_scores_are_finite_deterministic_and_differentiable(metrics, name):
    metric = metrics[name]
    videos = _videos().requires_grad_(True)
    scores = metric(videos)
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert torch.equal(scores.detach(), metric(videos.detach()))
    scores.sum().backward()
    assert torch.isfinite(videos.grad).all() and videos.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in metric.parameters())
    # (T, C, H, W) is one clip; train() leaves batch norm on the stored statistics.
    metric.train()
    single = metric(videos.detach()[1])
    assert single.shape == (1,) and torch.allclose(single, scores.detach()[1:], atol=1e-6)
    assert not metric.backbone.bn1.training


@pytest.mark.parametrize("name", ["vsfa", "mdtvsfa"])
def test_parity_with_the_release_pipeline(metrics, stand_ins, name):
    """Frames → release features → release head, against the adapter (same weights)."""
    metric = metrics[name]
    resnet_state = torch.load(stand_ins / "resnet50-random.pth", weights_only=True)
    head_file = "VSFA.pt" if name == "vsfa" else "MDTVSFA.pt"
    head_state = torch.load(stand_ins / head_file, weights_only=True)
    videos = _videos(count=2, frames=4, size=64)
    with torch.no_grad():
        ours = metric(videos)
        features = metric.features(videos)
        expected_features = torch.stack([official_features(v, resnet_state) for v in videos])
        assert (features - expected_features).abs().max() <= TOLERANCE
        if name == "vsfa":
            expected = torch.stack([official_vsfa(f, head_state) for f in expected_features])
        else:
            expected = torch.stack([official_mdtvsfa(f, head_state)["relative"]
                                    for f in expected_features])
    assert (ours - expected).abs().max() <= TOLERANCE


@pytest.mark.parametrize("frames", [1, 2, 11, 12, 13, 30])
def test_head_parity_over_clip_lengths(stand_ins, frames):
    """The heads (all MDTVSFA outputs) on random features, clips shorter and longer than τ."""
    generator = torch.Generator().manual_seed(frames)
    features = torch.rand(2, frames, 4096, generator=generator)
    features[:, :, 2048:] *= 0.3
    vsfa_state = torch.load(stand_ins / "VSFA.pt", weights_only=True)
    mdt_state = torch.load(stand_ins / "MDTVSFA.pt", weights_only=True)
    with torch.no_grad():
        vsfa = vqa_learned.VSFAHead()
        vsfa.load_state_dict(vsfa_state)
        expected = torch.stack([official_vsfa(f, vsfa_state) for f in features])
        assert (vsfa(features) - expected).abs().max() <= TOLERANCE
        official = [official_mdtvsfa(f, mdt_state) for f in features]
        for output in ("relative", "mapped", "K", "C", "L", "N"):
            head = vqa_learned.MDTVSFAHead(output)
            head.load_state_dict(mdt_state)
            expected = torch.stack([scores[output] for scores in official])
            scale = 1.0 if output in ("relative", "mapped", "K") else 100.0
            assert (head(features) - expected).abs().max() <= TOLERANCE * scale


def test_temporal_pooling_matches_the_release_formula_and_survives_low_qualities():
    generator = torch.Generator().manual_seed(5)
    q = 3 * torch.randn(3, 40, generator=generator)
    expected = torch.stack([official_tp(row.unsqueeze(1)) for row in q])
    assert (vqa_learned.temporal_pooling(q) - expected).abs().max() <= TOLERANCE
    low = torch.full((1, 5), -200.0)  # the release's exp(-q) overflows here
    assert torch.isfinite(vqa_learned.temporal_pooling(low)).all()
    assert vqa_learned.temporal_pooling(low).item() == pytest.approx(-200.0)


def test_mdtvsfa_outputs_and_info(stand_ins):
    videos = _videos(count=1, frames=3)
    scores = {}
    for output in ("relative", "mapped", "K"):
        metric = load_vqa_metric("mdtvsfa", weights=stand_ins / "MDTVSFA.pt",
                                 backbone=stand_ins / "resnet50-random.pth", device="cpu",
                                 output=output)
        with torch.no_grad():
            scores[output] = metric(videos).item()
        low, high = metric.info.range
        assert low <= scores[output] <= high
    assert metric.info.name == "mdtvsfa:K"
    assert metric.info.range == pytest.approx((1.2, 4.6))
    assert 0 < scores["relative"] < 1 and 0 < scores["mapped"] < 1
    with pytest.raises(ValueError, match="output"):
        load_vqa_metric("vsfa", output="K")
    with pytest.raises(ValueError, match="unknown MDTVSFA output"):
        load_vqa_metric("mdtvsfa", output="X")


def test_video_learned_table():
    assert set(VIDEO_LEARNED) == {"vsfa", "mdtvsfa"}
    for name, info in VIDEO_LEARNED.items():
        assert isinstance(info, MetricInfo) and info.name == name
        assert info.higher_is_better and not info.full_reference and info.differentiable
        assert info.release and info.description and info.range == (0.0, 1.0)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name,file,url", [
    ("vsfa", "VSFA.pt", "https://github.com/lidq92/VSFA/raw/master/models/VSFA.pt"),
    ("mdtvsfa", "MDTVSFA.pt", "https://github.com/lidq92/MDTVSFA/raw/main/models/MDTVSFA.pt"),
])
def test_missing_weights_name_each_file_url_and_place(offline, name, file, url):
    with pytest.raises(MissingWeightsError) as caught:
        load_vqa_metric(name)
    message = str(caught.value)
    for expected in (file, url, "resnet50-0676ba61.pth",
                     "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                     "resnet50-19c8e357.pth", str(offline),
                     str(offline.parent / "torch" / "hub" / "checkpoints"),
                     "ADVQA_WEIGHTS_DIR"):
        assert expected in message


def test_files_are_found_in_the_weight_directories(offline, stand_ins):
    import shutil

    shutil.copy(stand_ins / "VSFA.pt", offline / "VSFA.pt")
    with pytest.raises(MissingWeightsError) as caught:  # the head is found, not the backbone
        load_vqa_metric("vsfa")
    assert "VSFA.pt" not in str(caught.value) and "resnet50-0676ba61.pth" in str(caught.value)
    # An explicit backbone path, and the head by its default name.
    metric = load_vqa_metric("vsfa", backbone=stand_ins / "resnet50-random.pth", device="cpu")
    assert metric.files[0] == offline / "VSFA.pt"
    # A bare file name is looked up in the weight directories.
    shutil.copy(stand_ins / "resnet50-random.pth", offline / "resnet50-random.pth")
    metric = load_vqa_metric("vsfa", backbone="resnet50-random.pth", device="cpu")
    assert metric.files[1] == offline / "resnet50-random.pth"


def test_explicit_missing_path_says_where_it_looked_and_the_url(offline, tmp_path):
    missing = tmp_path / "elsewhere" / "my-vsfa.pt"
    with pytest.raises(MissingWeightsError) as caught:
        load_vqa_metric("vsfa", weights=missing)
    message = str(caught.value)
    assert str(missing) in message and str(offline) in message
    assert "https://github.com/lidq92/VSFA/raw/master/models/VSFA.pt" in message


def test_a_corrupt_backbone_digest_is_refused(offline, stand_ins):
    import shutil

    shutil.copy(stand_ins / "VSFA.pt", offline / "VSFA.pt")
    shutil.copy(stand_ins / "resnet50-random.pth", offline / "resnet50-0676ba61.pth")
    with pytest.raises(ValueError, match="corrupt"):
        load_vqa_metric("vsfa")


def test_wrong_files_are_rejected_naming_the_keys(stand_ins, tmp_path):
    backbone = stand_ins / "resnet50-random.pth"
    state = torch.load(stand_ins / "VSFA.pt", weights_only=True)
    renamed = dict(state)
    renamed["ann.fc1.weight"] = renamed.pop("ann.fc0.weight")
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(ValueError) as caught:
        load_vqa_metric("vsfa", weights=tmp_path / "renamed.pt", backbone=backbone)
    assert "'ann.fc0.weight'" in str(caught.value) and "'ann.fc1.weight'" in str(caught.value)

    reshaped = dict(state, **{"q.weight": torch.zeros(2, 32)})
    torch.save(reshaped, tmp_path / "reshaped.pt")
    with pytest.raises(ValueError, match=r"q\.weight: \(2, 32\) instead of \(1, 32\)"):
        load_vqa_metric("vsfa", weights=tmp_path / "reshaped.pt", backbone=backbone)

    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        load_vqa_metric("vsfa", weights=tmp_path / "list.pt", backbone=backbone)

    # The VSFA file given to MDTVSFA, and a head file given as the backbone.
    with pytest.raises(ValueError, match=r"dimemsion_reduction\.weight"):
        load_vqa_metric("mdtvsfa", weights=stand_ins / "VSFA.pt", backbone=backbone)
    with pytest.raises(ValueError, match="layer4"):
        load_vqa_metric("vsfa", weights=stand_ins / "VSFA.pt", backbone=stand_ins / "VSFA.pt")

    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot load weights"):
        load_vqa_metric("vsfa", weights=tmp_path / "junk.pt", backbone=backbone)


def test_unknown_name():
    with pytest.raises(ValueError, match="vsfa, mdtvsfa"):
        load_vqa_metric("tlvqm")


@pytest.mark.parametrize("videos,match", [
    (torch.rand(3, 64, 64), r"\(N, T, C, H, W\)"),  # a single frame
    (torch.rand(1, 2, 4, 64, 64), r"C = 3"),
    (torch.rand(1, 0, 3, 64, 64), "at least 1 frame"),
    (torch.rand(0, 2, 3, 64, 64), "empty batch"),
    (torch.rand(1, 2, 3, 32, 32), "too small"),
    (torch.full((1, 2, 3, 64, 64), math.nan), "NaN"),
    (torch.rand(1, 2, 3, 64, 64) * 255, r"\[0, 1\]"),
    (torch.rand(1, 2, 3, 64, 64) - 0.5, r"\[0, 1\]"),
    (torch.randint(0, 255, (1, 2, 3, 64, 64)), "floating point"),
    ([[0.5]], "tensor"),
])
def test_bad_inputs_are_refused_clearly(metrics, videos, match):
    with pytest.raises(ValueError, match=match):
        metrics["vsfa"](videos)


def test_grey_and_odd_sizes_are_scored(metrics):
    grey = _videos(count=1, frames=2)[:, :, :1]
    with torch.no_grad():
        assert torch.equal(metrics["vsfa"](grey), metrics["vsfa"](grey.expand(-1, -1, 3, -1, -1)))
        # 64×32 frames give a 2×1 res5c map, the smallest the std pooling allows.
        assert torch.isfinite(metrics["mdtvsfa"](torch.rand(1, 2, 3, 64, 32))).all()


def test_a_2019_layout_backbone_without_batch_counters_loads(metrics, stand_ins, tmp_path):
    """torchvision 0.3's resnet50-19c8e357.pth predates BN's num_batches_tracked."""
    state = torch.load(stand_ins / "resnet50-random.pth", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "resnet50-2019-layout.pth")
    metric = load_vqa_metric("vsfa", weights=stand_ins / "VSFA.pt",
                             backbone=tmp_path / "resnet50-2019-layout.pth", device="cpu")
    videos = _videos(count=1, frames=2)
    with torch.no_grad():
        assert torch.equal(metric(videos), metrics["vsfa"](videos))


def test_a_vqa_metric_scores_images_as_one_frame_clips(stand_ins, offline):
    """`advqa benchmark --metrics vsfa` attacks VSFA as the MSU benchmark does, each image
    (or frame) a one-frame clip; ST-RRED, which compares frames, has no image form; without
    weights the benchmark's loader raises the adapters' MissingWeightsError."""
    from advqa.quality.plugins import load_metric
    from advqa.quality.video import image_form
    from advqa.robustness.objective import MetricObjective

    metric = image_form("vsfa", weights=stand_ins / "VSFA.pt",
                        backbone=stand_ins / "resnet50-random.pth", device="cpu")
    images = _videos(count=2, frames=1, size=64)[:, 0]
    with torch.no_grad():
        assert torch.equal(metric(images), metric.metric(images[:, None]))
    assert metric.info.name == "vsfa" and not metric.info.full_reference
    objective = MetricObjective(metric, metric_range=1.0)
    start = images.clone().requires_grad_(True)
    objective.evaluate(start).loss.sum().backward()
    assert torch.isfinite(start.grad).all() and start.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no form for single images"):
        load_metric("strred")
    with pytest.raises(MissingWeightsError, match=r"VSFA\.pt"):
        load_metric("vsfa")
