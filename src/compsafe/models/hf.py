"""The model adapter: the only code in compsafe that runs forward passes.

Loads any Hugging Face causal LM (local directory, hub id, GGUF file, or an embedded
model's alias: ``default`` for SmolLM2-135M-Instruct, ``gemma3-270m``), picks device and
dtype, and serves log-likelihood requests through prefix-shared, length-sorted batches
(see ``loglik.py``). A model larger than one device loads with ``device_map`` (``"auto"``
or a mapping of module names to devices, transformers' own option): its modules are spread
over the GPUs (and CPU or disk), and inputs go to the embeddings' device
(``device.input_device``).

    model = HFModel.load("default")
    [resp] = model.loglikelihood([LoglikRequest("Question: 2+2?\\nAnswer:", " 4")])
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from compsafe.errors import ModelLoadError
from compsafe.identity import Lineage, ModelIdentity, read_compression_info
from compsafe.models import remote_code
from compsafe.models.adapter import ModelAdapter
from compsafe.models.checkpoint import check_safetensors
from compsafe.models.device import (
    configure_cpu_threads,
    input_device,
    parse_device_map,
    pick_device,
    pick_dtype,
)
from compsafe.models.embedded import EMBEDDED, convert_gguf, embedded_model_dir, gguf_cache_dir
from compsafe.models.fingerprint import (
    checkpoint_fingerprint,
    fingerprint_tensors,
    model_state,
)
from compsafe.models.loglik import score_token_pairs
from compsafe.models.tokenize import encode_pair
from compsafe.types import LoglikRequest, LoglikResponse

log = logging.getLogger(__name__)

_CONTEXT_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx", "seq_length")
_DEFAULT_MAX_LENGTH = 2048


def resolve_model_path(spec: str) -> tuple[str, str]:
    """Map a model spec to (what from_pretrained should load, display name).

    An alias of ``EMBEDDED`` (``default``, ``gemma3-270m``) is that embedded model; an
    existing ``.gguf`` file is converted once into the cache; an existing directory is
    used as is; anything else is taken as a hub id.
    """
    if spec in EMBEDDED:
        return str(embedded_model_dir(spec)), EMBEDDED[spec].name
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        return str(convert_gguf(path, gguf_cache_dir(path))), path.stem
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model directory (no config.json)")
        return str(path), path.name
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"model path not found: {path}")
    return spec, spec


_DECODER_ONLY = "a decoder-only causal LM (Llama, Mistral, Qwen, Gemma, Phi-3, GPT-NeoX, OPT, ...)"


def _architecture(config) -> str:
    archs = getattr(config, "architectures", None) or [type(config).__name__]
    return f"{archs[0]} (model_type {getattr(config, 'model_type', None)!r})"


def check_causal_lm(config, spec: str) -> None:
    """Refuse an encoder-decoder model before anything else loads: transformers would load
    some (BART, mBART) as their decoder alone, which scores text without its encoder."""
    if getattr(config, "is_encoder_decoder", False):
        raise ModelLoadError(f"cannot load model {spec!r}: {_architecture(config)} is an "
                             f"encoder-decoder model; compsafe evaluates {_DECODER_ONLY}")


def not_causal_lm(error: ValueError, config, spec: str) -> ModelLoadError | None:
    """transformers' "Unrecognized configuration class ... AutoModelForCausalLM" refusal
    (a multi-line list of every supported config) as one line naming the architecture."""
    if config is None or "AutoModelForCausalLM" not in str(error):
        return None
    return ModelLoadError(f"cannot load model {spec!r}: {_architecture(config)} has no causal "
                          f"LM class in transformers (AutoModelForCausalLM); compsafe "
                          f"evaluates {_DECODER_ONLY}")


@dataclass
class HFModel(ModelAdapter):
    """A loaded causal LM with its tokenizer: the model adapter (``models/adapter.py``)
    that serves all three request kinds."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    source: str
    batch_size: int = 16
    compression_info: dict | None = None
    """The model directory's ``compression.json`` (how it was compressed), if any."""
    quantization_config: dict | None = None
    """transformers' ``quantization_config`` of a pre-quantized checkpoint, if any."""
    base_model: str | None = None
    """The dense model this one was compressed from, when no compression.json says so
    (a pre-quantized hub checkpoint): set by ``compsafe eval --base-model``."""
    _float32_fingerprint: str | None = field(default=None, init=False, repr=False)
    _identity: ModelIdentity | None = field(default=None, init=False, repr=False)
    _offload: object = field(default=None, init=False, repr=False)
    """The temporary folder of weights a ``device_map`` offloaded to disk (removed with it)."""

    @classmethod
    def load(
        cls,
        spec: str,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        trust_remote_code: bool = False,
        device_map: str | dict | None = None,
        base_model: str | None = None,
    ) -> HFModel:
        """Load ``spec`` (see ``resolve_model_path``) onto the chosen device in eval mode.

        ``base_model`` names the dense model a pre-quantized checkpoint came from (part of
        its ``identity``; ``compsafe eval --base-model``).

        ``device_map`` (``device.parse_device_map``) spreads the model over several devices
        instead, as transformers places it; ``device`` then only chooses the default dtype
        and batch size. Weights it offloads to disk go to a temporary folder that lives as
        long as the returned model. A model that needs its own Python code is refused unless
        ``trust_remote_code`` (``models.remote_code``): never prompted for.
        """
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        device_map = parse_device_map(device_map)
        if device_map is not None and importlib.util.find_spec("accelerate") is None:
            raise ModelLoadError("device_map needs the accelerate package: pip install accelerate")
        source, name = resolve_model_path(spec)
        remote_code.check_model_dir(source, trust_remote_code)
        check_safetensors(source)  # a truncated copy: one line now, not a traceback later
        trust = remote_code.kwargs(trust_remote_code)
        dev = pick_device(device)
        torch_dtype = pick_dtype(dev, dtype)
        if dev.type == "cpu":
            configure_cpu_threads()
        config = None
        try:
            config = AutoConfig.from_pretrained(source, **trust)
            check_causal_lm(config, spec)
            tokenizer = AutoTokenizer.from_pretrained(source, **trust)
            qconfig = getattr(config, "quantization_config", None)
            # A pre-quantized checkpoint (GPTQ, AWQ, bitsandbytes) loads through transformers'
            # own integration, placed at load time: bitsandbytes models refuse ``.to()``.
            placement = {"device_map": {"": str(dev)}} if qconfig is not None else {}
            offload = None
            if device_map is not None:
                offload = tempfile.TemporaryDirectory(prefix="compsafe-offload-")
                placement = {"device_map": device_map, "offload_folder": offload.name}
            model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch_dtype,
                                                         **placement, **trust)
        except ValueError as e:
            refused = remote_code.refusal(e, spec) or not_causal_lm(e, config, spec)
            if refused is not None:
                raise refused from None
            if device_map is None:
                raise
            raise ModelLoadError(f"cannot place model {spec!r} with device_map {device_map!r}: "
                                 f"{' '.join(str(e).split())}") from e
        except OSError as e:
            raise ModelLoadError(f"cannot load model {spec!r} (tried {source}): {e}") from e
        except ImportError as e:  # a quantized checkpoint whose backend is not installed
            raise ModelLoadError(f"cannot load model {spec!r}: {e}") from e
        if not placement:
            model.to(dev)
        model.eval()
        if batch_size is None:
            batch_size = 64 if dev.type == "cuda" else 16
        info = read_compression_info(source) if Path(source).is_dir() else None
        if qconfig is not None and not isinstance(qconfig, dict):
            qconfig = qconfig.to_dict()
        loaded = cls(model, tokenizer, name, source, batch_size, info, qconfig, base_model)
        loaded._offload = offload
        if device_map is not None:
            log.info("%s placed by device_map: %s", name,
                     getattr(model, "hf_device_map", None) or device_map)
        return loaded

    @property
    def device(self) -> torch.device:
        """Where inputs go (the embeddings' device; a split model spans several)."""
        return input_device(self.model)

    @property
    def max_length(self) -> int:
        """The context window, read the way lm-evaluation-harness reads it."""
        for attr in _CONTEXT_ATTRS:
            value = getattr(self.model.config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            return tok_max
        return _DEFAULT_MAX_LENGTH

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
            if candidate is not None:
                return candidate
        return 0

    def render_chat(self, text: str, system: str | None = None) -> str:
        """``text`` as a user turn in the tokenizer's chat template, ready for the answer."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelLoadError(f"model {self.name!r} has no chat template; drop --chat")
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text}
        ]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def loglikelihood(
        self, requests: Sequence[LoglikRequest], progress: bool = False
    ) -> list[LoglikResponse]:
        """log P(continuation | context) for each request, in order."""
        pairs = [encode_pair(self.tokenizer, r.context, r.continuation) for r in requests]
        return score_token_pairs(
            self.model, pairs, self.pad_id, self.max_length, self.batch_size, progress
        )

    def rolling_loglikelihood(self, requests: Sequence, progress: bool = False) -> list:
        """log P(text) per ``RollingRequest`` (lm-eval's rolling windows, batched across
        texts); a ``WindowedText`` is scored by its corpus protocol (see ``rolling.py``)."""
        from compsafe.models.rolling import rolling_loglikelihood

        return rolling_loglikelihood(self, requests, progress)

    def generate(self, requests, decoding, seed: int, progress: bool = False) -> list[str]:
        """Continuations of ``requests`` (``GenerationRequest``), reproducible per sample key."""
        from compsafe.models.generate import generate

        return generate(self.model, self.tokenizer, requests, decoding, seed, self.batch_size,
                        self.pad_id, self.max_length, progress)

    @property
    def identity(self) -> ModelIdentity:
        """What this model is, as loaded: name, fingerprint, dtype and lineage (from its
        ``compression.json``, its ``quantization_config`` with ``base_model``, or itself
        as a dense base). Built once, on first use (the fingerprint hashes every weight),
        then the same frozen value: runner, store and reports read it."""
        if self._identity is None:
            fingerprint = self.fingerprint()
            info, qconfig = self.compression_info, self.quantization_config
            base = fingerprint
            if info is None and qconfig is None:
                # A dense model is its own base, identified as compress identifies sources.
                base = self.float32_fingerprint(fingerprint)
            lineage = Lineage.of(self.name, base, info, qconfig, self.base_model)
            overlaps = ((info or {}).get("calibration") or {}).get("overlaps") or ()
            dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
            self._identity = ModelIdentity(self.name, fingerprint, dtype, lineage,
                                           tuple(overlaps))
        return self._identity

    def fingerprint(self) -> str:
        """Content hash of the weights (names, dtypes, shapes, bytes) and the tokenizer.

        Part of every run key, so results of a dense model can never be served for a
        compressed one, whatever the directory is called (``models/fingerprint.py``).
        """
        return fingerprint_tensors(model_state(self.model), self.tokenizer)

    def float32_fingerprint(self, own: str | None = None) -> str:
        """This model's identity as a dense base: its fingerprint when loaded in float32.

        ``compsafe compress`` loads its source in float32 and records that fingerprint, so
        a compressed model pairs with its dense runs whatever dtype they were evaluated in
        (bf16 by default on a GPU). Equal to ``fingerprint()`` (``own``, if already
        computed) for a float32 model. For one loaded in another dtype it is read from the
        checkpoint tensor by tensor (``checkpoint_fingerprint``); failing that, it is the
        fingerprint of the weights upcast to float32, which is exact when the checkpoint
        is stored in the dtype it was loaded in. Computed once per loaded model.
        """
        if self._float32_fingerprint is None:
            state = self.model.state_dict()
            if all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point()):
                fp = own or self.fingerprint()
            else:
                log.info("%s: reading its checkpoint for its float32 identity", self.name)
                fp = checkpoint_fingerprint(self.source, self.tokenizer)
                if fp is None:
                    fp = fingerprint_tensors(
                        ((n, t.float() if t.is_floating_point() else t)
                         for n, t in model_state(self.model)), self.tokenizer)
            self._float32_fingerprint = fp
        return self._float32_fingerprint
