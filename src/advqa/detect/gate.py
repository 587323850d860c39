"""A deployable fit-for-task gate: Feng & Cai's SVM plus optional simple detectors.

:class:`Gate` combines

* ``svm`` — the fit-for-task detector of Feng & Cai: an RBF SVM on the victim's
  top-5 softmax probabilities and a normalised no-reference quality score
  (:mod:`advqa.detect.features`), trained on clean (fit) vs adversarial (unfit);
* ``quality`` (optional) — Baseline-2: unfit when the normalised quality is below a
  threshold (0.3 by default);
* ``squeeze`` (optional) — feature squeezing (Xu et al., NDSS 2018), threshold at a
  target false-positive rate on the clean training images;
* ``ws`` (optional) — the WS steganalysis detector, when
  :class:`advqa.detect.ws.WSDetector` is available.

An image is *unfit* as soon as one enabled detector fires; the decision lists
which ones fired and every score.

Saved format (no pickle anywhere)
---------------------------------
``gate.json`` (UTF-8 JSON) and ``gate.npz`` (``np.savez`` arrays, read with
``allow_pickle=False``). The JSON holds ``format_version`` (:data:`FORMAT_VERSION`),
the model name and weights, the quality scale, the detector settings and
thresholds, ``arrays_file`` and ``arrays_sha256`` (SHA-256 of the .npz bytes),
``signature`` and ``json_sha256``. The SVM is stored as support vectors, dual
coefficients, intercept and gamma (plus the standardisation mean/scale) and
evaluated by :func:`rbf_decision`, identical to scikit-learn's
``SVC.decision_function``.

Corruption and tampering
------------------------
``json_sha256`` is the SHA-256 of the canonical JSON (sorted keys, no spaces) of
the document without that field. Being unkeyed, it and ``arrays_sha256`` detect
*corruption* only: whoever edits a threshold can recompute them. Deliberate
edits are caught by ``signature``: an HMAC-SHA256, under a secret key the user
holds, of the canonical JSON without ``json_sha256`` and ``signature`` (which
covers the arrays through ``arrays_sha256``). :func:`create_gate_key` writes a
key, :func:`read_gate_key` reads one (from a file, or the file named by
:data:`KEY_ENVIRONMENT`). :meth:`Gate.save` signs when given a key;
:meth:`Gate.load` verifies with the key and refuses a wrong signature. A file
that cannot be verified — unsigned, or signed but loaded without a key — is
refused unless ``allow_unsigned=True``, and then loads with a warning.
:meth:`Gate.load` raises :class:`GateFormatError` (a ValueError) for a wrong
version, a corrupt or edited JSON, or a missing, corrupt or tampered arrays
file, and its subclass :class:`GateSignatureError` for a signature that is
missing, unverifiable or wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from advqa.detect.features import Features, QualityScale, extract
from advqa.detect.squeeze import FeatureSqueezing

FORMAT_VERSION = 1
FORMAT_NAME = "advqa-fit-for-task-gate"
SIGNATURE_ALGORITHM = "HMAC-SHA256"
#: Environment variable naming the key file when none is given explicitly.
KEY_ENVIRONMENT = "ADVQA_GATE_KEY_FILE"
#: Shortest key accepted: 128 bits, the least HMAC-SHA256 should be keyed with.
MIN_KEY_BYTES = 16


class GateFormatError(ValueError):
    """A gate file that cannot be trusted or read."""


class GateSignatureError(GateFormatError):
    """A gate whose signature is missing, cannot be verified or does not match."""


# ---------------------------------------------------------------- signing keys

def create_gate_key(path) -> Path:
    """Write a new random signing key (32 bytes, hex) to ``path``, readable by the owner only.

    The file is created with mode 0600 and written atomically. An existing file
    is never overwritten (:class:`FileExistsError`): gates signed with the old
    key would no longer load.
    """
    from advqa.data import atomic_write_bytes

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; a new key there would orphan the gates signed "
                              "with it: delete it first or choose another path")
    return atomic_write_bytes(path, (secrets.token_hex(32) + "\n").encode(), mode=0o600)


def read_gate_key(path=None) -> bytes | None:
    """The signing key held in ``path``: the file's bytes without trailing whitespace.

    With ``path`` None, the file named by the environment variable
    :data:`KEY_ENVIRONMENT` (``ADVQA_GATE_KEY_FILE``) is read; when that is
    unset too, returns None (no key). A key file that the group or others may
    read gives a warning (anyone who can read it can forge gates).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the key is shorter than :data:`MIN_KEY_BYTES` bytes.
    """
    if path is None:
        path = os.environ.get(KEY_ENVIRONMENT) or None
        if path is None:
            return None
    path = Path(path)
    key = _checked_key(path.read_bytes().rstrip(b" \t\r\n"), where=str(path))
    # Warn rather than refuse: secrets mounted by container platforms are often 0644.
    if os.name == "posix" and path.stat().st_mode & 0o077:
        warnings.warn(f"gate key file {path} can be read by other users, who could then "
                      f"sign forged gates; restrict it with: chmod 600 {path}", stacklevel=2)
    return key


def _checked_key(key, *, where: str = "key") -> bytes:
    if not isinstance(key, bytes | bytearray):
        raise ValueError(f"a gate key must be bytes (see read_gate_key), got "
                         f"{type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{where}: the gate key has {len(key)} bytes, fewer than "
                         f"{MIN_KEY_BYTES}; create one with `advqa detect gate-key PATH`")
    return bytes(key)


def _signature(key: bytes, document: dict) -> str:
    return hmac.new(key, _canonical(document), hashlib.sha256).hexdigest()


def _verify(path: Path, document: dict, signature, key: bytes | None,
            allow_unsigned: bool) -> None:
    """Check ``signature`` of ``document`` (without it and json_sha256); raise or warn."""
    how = "pass its key (--key-file or ADVQA_GATE_KEY_FILE; key= in Python)"
    if signature is None:
        if not allow_unsigned:
            raise GateSignatureError(
                f"{path}: the gate is not signed, so deliberate edits cannot be detected; "
                "refit it with a key (--key-file), or pass --allow-unsigned "
                "(allow_unsigned=True) to load it anyway")
        warnings.warn(f"{path}: unsigned gate: its checksums detect corruption, not "
                      "deliberate edits", stacklevel=3)
        return
    if not (isinstance(signature, dict) and signature.get("algorithm") == SIGNATURE_ALGORITHM
            and isinstance(signature.get("value"), str)):
        raise GateSignatureError(f"{path}: malformed signature (expected "
                                 f"{SIGNATURE_ALGORITHM}); refit or restore the gate")
    if key is None:
        if not allow_unsigned:
            raise GateSignatureError(f"{path}: the gate is signed; {how} to verify it, or "
                                     "--allow-unsigned to load it unverified")
        warnings.warn(f"{path}: signature NOT verified (no key given): the gate is only "
                      "checked for corruption", stacklevel=3)
        return
    expected = _signature(key, document).encode()
    if not hmac.compare_digest(signature["value"].encode(), expected):
        raise GateSignatureError(
            f"{path}: the signature does not match: the gate was edited after it was signed, "
            "or signed with another key; do not use it (refit, or use the right key)")


#: Kernel values held at once by :func:`rbf_decision` (rows × support vectors): 32 MB.
RBF_CHUNK_VALUES = 2 ** 22


def rbf_decision(features, support_vectors, dual_coef, intercept, gamma) -> np.ndarray:
    """``Σ_i α_i·exp(−γ‖x − s_i‖²) + b`` per row of ``features``, shape (N,).

    With the arrays of a fitted binary ``sklearn.svm.SVC`` (``support_vectors_``,
    ``dual_coef_[0]``, ``intercept_[0]``, ``_gamma``) this equals its
    ``decision_function``: positive means ``classes_[1]``.

    ``‖x − s‖² = ‖x‖² + ‖s‖² − 2 x·s`` (one matrix product; clipped at 0 against
    rounding), over chunks of rows that hold at most :data:`RBF_CHUNK_VALUES` kernel
    values: memory stays bounded for 10⁵ images against 10⁴ support vectors (a 10k-image
    Fashion-MNIST gate-eval), where the (N, S, d) differences would take tens of GB.
    """
    x = np.atleast_2d(np.asarray(features, dtype=np.float64))
    vectors = np.asarray(support_vectors, dtype=np.float64)
    dual = np.asarray(dual_coef, dtype=np.float64)
    squares = np.einsum("ij,ij->i", vectors, vectors)
    rows = max(1, RBF_CHUNK_VALUES // max(1, vectors.shape[0]))
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], rows):
        chunk = x[start:start + rows]
        distances = np.einsum("ij,ij->i", chunk, chunk)[:, None] + squares[None, :] \
            - 2.0 * (chunk @ vectors.T)
        np.maximum(distances, 0.0, out=distances)
        distances *= -float(gamma)
        out[start:start + rows] = np.exp(distances, out=distances) @ dual
    return out + float(intercept)


@dataclass
class SVMDetector:
    """Standardise, then RBF SVM decision; unfit when the decision exceeds ``threshold``."""

    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: float
    gamma: float
    mean: np.ndarray
    scale: np.ndarray
    threshold: float = 0.0
    penalty: float = 1.0

    @classmethod
    def fit(cls, features, unfit, *, penalty: float = 1.0, gamma="scale",
            class_weight=None) -> SVMDetector:
        """Fit on ``features`` (N, d) with boolean ``unfit`` labels (True = adversarial)."""
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(unfit, dtype=int)
        if len(set(y.tolist())) != 2:
            raise ValueError("the SVM needs both fit and unfit training examples")
        scaler = StandardScaler().fit(x)
        svc = SVC(kernel="rbf", C=penalty, gamma=gamma, class_weight=class_weight)
        svc.fit(scaler.transform(x), y)
        return cls(svc.support_vectors_.copy(), svc.dual_coef_[0].copy(),
                   float(svc.intercept_[0]), float(svc._gamma), scaler.mean_.copy(),
                   scaler.scale_.copy(), 0.0, float(penalty))

    def standardise(self, features) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self.mean) / self.scale

    def decision(self, features) -> np.ndarray:
        return rbf_decision(self.standardise(features), self.support_vectors, self.dual_coef,
                            self.intercept, self.gamma)

    def flags(self, features) -> np.ndarray:
        return self.decision(features) > self.threshold

    def arrays(self) -> dict[str, np.ndarray]:
        return {"svm_support_vectors": self.support_vectors, "svm_dual_coef": self.dual_coef,
                "svm_intercept": np.array([self.intercept]), "svm_gamma": np.array([self.gamma]),
                "svm_mean": self.mean, "svm_scale": self.scale}

    @classmethod
    def from_arrays(cls, arrays, threshold: float, penalty: float) -> SVMDetector:
        vectors = np.asarray(arrays["svm_support_vectors"], dtype=np.float64)
        dual = np.asarray(arrays["svm_dual_coef"], dtype=np.float64).reshape(-1)
        mean = np.asarray(arrays["svm_mean"], dtype=np.float64).reshape(-1)
        scale = np.asarray(arrays["svm_scale"], dtype=np.float64).reshape(-1)
        if vectors.ndim != 2 or vectors.shape[0] != dual.size or not (
                vectors.shape[1] == mean.size == scale.size):
            raise GateFormatError("SVM arrays have inconsistent shapes")
        return cls(vectors, dual, float(arrays["svm_intercept"].reshape(-1)[0]),
                   float(arrays["svm_gamma"].reshape(-1)[0]), mean, scale, float(threshold),
                   float(penalty))


@dataclass
class Decision:
    """The gate's verdict on one image."""

    fit: bool
    reasons: list[str] = field(default_factory=list)   # detectors that fired, with scores
    scores: dict[str, float] = field(default_factory=dict)
    prediction: int = -1                               # the victim's top-1 class

    @property
    def label(self) -> str:
        return "fit" if self.fit else "unfit"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


class Gate:
    """Fit-for-task gate; see the module docstring.

    Build with :meth:`fit` (from images) or :meth:`from_features`, use with
    :meth:`check`, persist with :meth:`save` / :meth:`load`.
    """

    def __init__(self, *, scale: QualityScale, svm: SVMDetector | None = None,
                 quality_threshold: float | None = None,
                 squeeze: FeatureSqueezing | None = None, ws_threshold: float | None = None,
                 model_name: str = "efficientnet-lite0", weights: str = "default",
                 metadata: dict | None = None, model=None, device=None):
        if svm is None and quality_threshold is None and squeeze is None and ws_threshold is None:
            raise ValueError("a gate needs at least one detector")
        if squeeze is not None and squeeze.threshold is None:
            raise ValueError("feature squeezing must be calibrated")
        self.scale, self.svm = scale, svm
        self.quality_threshold = None if quality_threshold is None else float(quality_threshold)
        self.squeeze, self.ws_threshold = squeeze, ws_threshold
        self.model_name, self.weights = model_name, weights
        self.metadata = dict(metadata or {})
        self._model, self.device = model, device

    # ---------------------------------------------------------------- building
    @classmethod
    def from_features(cls, clean: Features, adversarial: Features, *, scale: QualityScale,
                      use_svm: bool = True, quality_threshold: float | None = 0.3,
                      use_squeeze: bool = True, target_fpr: float = 0.05,
                      use_ws: bool = False, penalty: float = 1.0, **options) -> Gate:
        """A gate trained on precomputed features of clean/adversarial images."""
        svm = None
        if use_svm:
            x = np.vstack([clean.features, adversarial.features])
            y = np.r_[np.zeros(len(clean)), np.ones(len(adversarial))]
            svm = SVMDetector.fit(x, y, penalty=penalty)
        squeeze = None
        if use_squeeze:
            if clean.squeeze is None:
                raise ValueError("feature-squeezing scores missing: extract with a squeezer")
            squeeze = FeatureSqueezing().calibrate(clean.squeeze, target_fpr=target_fpr)
        ws_threshold = None
        if use_ws:
            from advqa.detect.squeeze import threshold_at_fpr

            if clean.ws is None:
                raise ValueError("WS scores missing: extract with a WS detector")
            ws_threshold = threshold_at_fpr(clean.ws, target_fpr)
        metadata = {"training_clean": len(clean), "training_adversarial": len(adversarial),
                    "target_fpr": target_fpr, **options.pop("metadata", {})}
        return cls(scale=scale, svm=svm, quality_threshold=quality_threshold, squeeze=squeeze,
                   ws_threshold=ws_threshold, metadata=metadata, **options)

    @classmethod
    def fit(cls, model, clean_images, adversarial_images, *, quality: str = "dtniq",
            scale: QualityScale | None = None, use_svm: bool = True,
            quality_threshold: float | None = 0.3, use_squeeze: bool = True,
            target_fpr: float = 0.05, use_ws: bool = False, penalty: float = 1.0,
            weights: str = "default", metadata: dict | None = None) -> Gate:
        """Fit on clean images (fit) and adversarial images (unfit) for ``model``."""
        scale = scale or QualityScale.default(quality)
        squeezer = FeatureSqueezing(threshold=0.0) if use_squeeze else None
        ws = _ws_detector() if use_ws else None
        clean = extract(model, clean_images, scale, squeezer=squeezer, ws=ws)
        adversarial = extract(model, adversarial_images, scale, squeezer=squeezer, ws=ws)
        info = getattr(model, "info", None)
        return cls.from_features(
            clean, adversarial, scale=scale, use_svm=use_svm,
            quality_threshold=quality_threshold, use_squeeze=use_squeeze,
            target_fpr=target_fpr, use_ws=use_ws, penalty=penalty,
            model_name=getattr(info, "name", "unknown"), weights=weights, model=model,
            metadata=metadata or {})

    # ---------------------------------------------------------------- using
    @property
    def model(self):
        if self._model is None:
            from advqa.models import load_classifier

            weights = None if self.weights.lower() == "none" else self.weights
            self._model = load_classifier(self.model_name, weights=weights, device=self.device)
        return self._model

    @property
    def detectors(self) -> list[str]:
        names = [("svm", self.svm is not None), ("quality", self.quality_threshold is not None),
                 ("squeeze", self.squeeze is not None), ("ws", self.ws_threshold is not None)]
        return [name for name, present in names if present]

    def features(self, images) -> Features:
        squeezer = self.squeeze
        ws = _ws_detector() if self.ws_threshold is not None else None
        return extract(self.model, images, self.scale, squeezer=squeezer, ws=ws)

    def check(self, images) -> list[Decision]:
        """Decide fit/unfit for images: an (N, C, H, W) tensor or a list of (C, H, W)
        (C = 1 or 3; turned into the victim's channel count, see
        :func:`advqa.detect.features.prepare`)."""
        return self.decide(self.features(images))

    def flags(self, features: Features) -> dict[str, np.ndarray]:
        """Per detector, which images it flags as unfit."""
        flags = {}
        if self.svm is not None:
            flags["svm"] = self.svm.flags(features.features)
        if self.quality_threshold is not None:
            flags["quality"] = features.quality < self.quality_threshold
        if self.squeeze is not None:
            flags["squeeze"] = self.squeeze.flags(features.squeeze)
        if self.ws_threshold is not None:
            flags["ws"] = np.asarray(features.ws) > self.ws_threshold
        return flags

    def decide(self, features: Features) -> list[Decision]:
        flags = self.flags(features)
        scores = {"quality": features.quality, "quality_raw": features.quality_raw,
                  "top1_probability": features.features[:, 0]}
        rules = {"quality": f"< {self.quality_threshold}"}
        if self.svm is not None:
            scores["svm"] = self.svm.decision(features.features)
            rules["svm"] = f"> {self.svm.threshold:g}"
        if self.squeeze is not None:
            scores["squeeze"] = features.squeeze
            rules["squeeze"] = f"> {self.squeeze.threshold:.4g}"
        if self.ws_threshold is not None:
            scores["ws"] = features.ws
            rules["ws"] = f"> {self.ws_threshold:.4g}"
        decisions = []
        for index in range(len(features)):
            fired = [name for name in flags if flags[name][index]]
            values = {name: float(value[index]) for name, value in scores.items()}
            reasons = [f"{name} {values[name]:.4g} {rules[name]}" for name in fired]
            if not np.isfinite(values["quality_raw"]):
                # Say why the quality is 0: the metric could not score this image.
                reasons.append(f"{self.scale.metric} could not score this image (raw "
                               f"{values['quality_raw']}): worst quality 0 used")
            decisions.append(Decision(not fired, reasons, values,
                                      int(features.predictions[index])))
        return decisions

    # ---------------------------------------------------------------- files
    def _document(self, arrays_file: str, arrays_sha256: str) -> dict:
        detectors = {}
        if self.svm is not None:
            detectors["svm"] = {"threshold": self.svm.threshold, "C": self.svm.penalty,
                                "kernel": "rbf", "support_vectors": len(self.svm.dual_coef),
                                "features": ["p1", "p2", "p3", "p4", "p5", "quality"]}
        if self.quality_threshold is not None:
            detectors["quality"] = {"threshold": self.quality_threshold}
        if self.squeeze is not None:
            detectors["squeeze"] = {"threshold": self.squeeze.threshold,
                                    "bits": self.squeeze.bits, "median": self.squeeze.median}
        if self.ws_threshold is not None:
            detectors["ws"] = {"threshold": self.ws_threshold}
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "model": {"name": self.model_name, "weights": self.weights},
                "quality": self.scale.to_json(), "detectors": detectors,
                "arrays_file": arrays_file, "arrays_sha256": arrays_sha256,
                "metadata": self.metadata}

    def save(self, path, *, key: bytes | None = None) -> tuple[Path, Path]:
        """Write ``path`` (JSON) and the arrays next to it (same stem, ``.npz``).

        With ``key`` (see :func:`read_gate_key`) the JSON is signed
        (HMAC-SHA256); without it the gate is unsigned and loads only with
        ``allow_unsigned=True``.
        """
        from advqa.data import atomic_write_bytes

        path = Path(path)
        arrays_path = path.with_suffix(".npz")
        buffer = io.BytesIO()
        np.savez(buffer, **(self.svm.arrays() if self.svm is not None else
                            {"empty": np.zeros(0)}))
        data = buffer.getvalue()
        document = self._document(arrays_path.name, _sha256(data))
        if key is not None:
            document["signature"] = {"algorithm": SIGNATURE_ALGORITHM,
                                     "value": _signature(_checked_key(key), document)}
        document["json_sha256"] = _sha256(_canonical(document))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(arrays_path, data)
        atomic_write_bytes(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
        return path, arrays_path

    @classmethod
    def load(cls, path, *, key: bytes | None = None, allow_unsigned: bool = False,
             model=None, device=None) -> Gate:
        """Read a gate written by :meth:`save`; raises :class:`GateFormatError`.

        Parameters
        ----------
        path : path
            The gate's JSON file.
        key : bytes, optional
            The signing key (:func:`read_gate_key`). A signed gate is verified
            with it; a wrong signature raises :class:`GateSignatureError`.
        allow_unsigned : bool
            Load a gate that cannot be verified — unsigned, or signed while no
            ``key`` is given — with a warning instead of raising
            :class:`GateSignatureError`. Its checksums then catch corruption only.
        model, device
            The victim is loaded lazily by name (on ``device``; cuda if present by default)
            unless ``model`` is given.
        """
        if key is not None:
            key = _checked_key(key)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"gate file {path} not found" + (" (it is a folder)" if path.is_dir() else "")
                + ": fit one with `advqa detect fit-gate --out GATE.json`")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise GateFormatError(f"{path}: not a valid gate JSON file ({error})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
            raise GateFormatError(f"{path}: not an advqa gate file (format != {FORMAT_NAME!r})")
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            raise GateFormatError(f"{path}: unsupported gate format_version {version!r}; "
                                  f"this advqa reads version {FORMAT_VERSION}")
        recorded = document.pop("json_sha256", None)
        if recorded != _sha256(_canonical(document)):
            raise GateFormatError(f"{path}: the JSON was edited or corrupted (json_sha256 "
                                  "does not match its content); refit or restore the gate")
        _verify(path, document, document.pop("signature", None), key, allow_unsigned)
        try:
            arrays_path = path.parent / Path(str(document["arrays_file"])).name
            data = arrays_path.read_bytes()
        except (KeyError, OSError) as error:
            raise GateFormatError(f"{path}: cannot read the gate arrays ({error})") from None
        if _sha256(data) != document.get("arrays_sha256"):
            raise GateFormatError(f"{arrays_path}: SHA-256 does not match the one recorded in "
                                  f"{path.name}: the arrays file was tampered with or corrupted")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            detectors = document["detectors"]
            scale = QualityScale.from_json(document["quality"])
            svm = None
            if "svm" in detectors:
                svm = SVMDetector.from_arrays(arrays, detectors["svm"]["threshold"],
                                              detectors["svm"].get("C", 1.0))
            squeeze = None
            if "squeeze" in detectors:
                s = detectors["squeeze"]
                squeeze = FeatureSqueezing(bits=s["bits"], median=s["median"],
                                           threshold=s["threshold"])
            quality = detectors.get("quality", {}).get("threshold")
            ws = detectors.get("ws", {}).get("threshold")
            return cls(scale=scale, svm=svm, quality_threshold=quality, squeeze=squeeze,
                       ws_threshold=ws, model_name=document["model"]["name"],
                       weights=document["model"]["weights"],
                       metadata=document.get("metadata", {}), model=model, device=device)
        except GateFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as error:
            raise GateFormatError(f"{path}: malformed gate ({type(error).__name__}: "
                                  f"{error})") from None

    def __repr__(self) -> str:
        return (f"Gate(model={self.model_name!r}, quality={self.scale.metric!r}, "
                f"detectors={self.detectors})")


def _ws_detector():
    """An uncalibrated WS detector, if advqa.detect.ws provides one (optional)."""
    try:
        from advqa.detect.ws import WSDetector
    except ImportError as error:
        raise ValueError("the WS detector (advqa.detect.ws.WSDetector) is not available") \
            from error
    return WSDetector()
