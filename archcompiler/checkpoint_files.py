"""Reading and writing checkpoint files without ever unpickling arbitrary objects:
.safetensors through safetensors' numpy API (BF16 converted here), .pt/.pth through
`torch.load(weights_only=True)` only when torch is installed."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import Location, SpecError, error

OURS = "archc"


class CheckpointError(SpecError):
    """A checkpoint that cannot be read or does not match the spec."""


def _ckpt_error(path: str, message: str) -> CheckpointError:
    return CheckpointError(error(Location(path, 1, 1), message))


@dataclass(frozen=True)
class UnusableTensor:
    """A checkpoint tensor that cannot be weights (an unsupported dtype or layout): kept
    as a placeholder, so that a mismatch report can name it."""

    shape: tuple
    dtype: str
    reason: str = ""


CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
_SAFETENSORS_FLOAT = {"F16", "F32", "F64"}  # numpy reads these; BF16 is converted here
_SAFETENSORS_INT = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64"}
ZIP_MAGIC = b"PK\x03\x04"


def _head(path: str, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 27)


def _check_checkpoint_file(path: str) -> None:
    """A checkpoint must be a readable regular file: never open a FIFO or a device
    (which could block forever or never end)."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _ckpt_error(path, "no such checkpoint file") from None
    except OSError as exc:
        raise _ckpt_error(path, f"cannot read the checkpoint: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _ckpt_error(path, "is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise _ckpt_error(path, "not a regular file (a device, FIFO or socket): refused")


def _bf16_to_f32(raw: bytes, shape) -> np.ndarray:
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).reshape(tuple(shape))


def _read_safetensors(path: str) -> dict:
    import json
    import struct

    from safetensors import SafetensorError, safe_open

    out: dict = {}
    bf16: dict[str, list] = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for k in f.keys():
                sl = f.get_slice(k)
                dtype, shape = sl.get_dtype(), tuple(sl.get_shape())
                if dtype in _SAFETENSORS_FLOAT:
                    out[k] = np.asarray(f.get_tensor(k), dtype=np.float32)
                elif dtype == "BF16":  # numpy has no bfloat16: converted from the raw bytes
                    bf16[k] = list(shape)
                    out[k] = None
                elif dtype in _SAFETENSORS_INT:
                    out[k] = np.asarray(f.get_tensor(k))
                else:
                    out[k] = UnusableTensor(shape, dtype)
        if bf16:
            # the header was validated by safe_open above: offsets lie inside the file
            with open(path, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
                for k, shape in bf16.items():
                    start, stop = header[k]["data_offsets"]
                    fh.seek(8 + n + start)
                    out[k] = _bf16_to_f32(fh.read(stop - start), shape)
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, struct.error) as exc:
        hint = ""
        if _head(path, 4) == ZIP_MAGIC:
            hint = " (this looks like a PyTorch zip checkpoint: name it .pt)"
        raise _ckpt_error(path, f"not a valid safetensors file (corrupt or truncated?): "
                                f"{exc}{hint}") from None
    return out


def _torch_value(v):
    """A tensor from torch.load -> a numpy array (floats as float32), or UnusableTensor."""
    import torch

    shape = tuple(v.shape)
    dtype = str(v.dtype).replace("torch.", "")
    if v.layout != torch.strided:
        return UnusableTensor(shape, dtype, f"{str(v.layout).replace('torch.', '')} tensor")
    if v.device.type != "cpu":
        return UnusableTensor(shape, dtype, f"tensor on device {v.device.type} (no data)")
    if v.is_quantized or v.is_complex():
        return UnusableTensor(shape, dtype)
    if v.is_floating_point():
        if v.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            return UnusableTensor(shape, dtype)
        return v.detach().float().numpy()
    try:
        return v.detach().numpy()
    except (TypeError, RuntimeError):
        return UnusableTensor(shape, dtype)


def _torch_error_detail(exc: BaseException) -> str:
    """The informative line of torch.load's error (not its advice to unpickle anyway)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        low = ln.lower()
        if ("unsupported" in low or "global" in low) and "weights_only" not in low:
            return ln.rstrip(".")
    return lines[0].split(". ")[0].rstrip(".") if lines else type(exc).__name__


def _read_torch(path: str) -> dict:
    head = _head(path)
    if _looks_like_safetensors(head):
        raise _ckpt_error(path, "this is a safetensors file, not a PyTorch checkpoint: name it "
                                ".safetensors")
    if not head.startswith(ZIP_MAGIC) and not head.startswith(b"\x80"):
        raise _ckpt_error(path, "not a PyTorch checkpoint (neither a torch.save zip archive nor a "
                                "pickle); use .safetensors or a state_dict saved with torch.save")
    try:
        import torch
    except ImportError:
        raise _ckpt_error(path, "reading a .pt/.pth checkpoint needs torch; convert it to "
                                ".safetensors, which needs nothing") from None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        import pickle

        if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
            raise _ckpt_error(path, "refused: the file holds Python objects other than tensors, "
                                    "and archc never unpickles them (torch.load with "
                                    f"weights_only=True): {_torch_error_detail(exc)}; save "
                                    "model.state_dict(), or convert to .safetensors") from None
        raise _ckpt_error(path, "not a readable PyTorch checkpoint (corrupt or truncated?): "
                                f"{_torch_error_detail(exc)}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise _ckpt_error(path, f"expected a state_dict (a mapping of names to tensors), got "
                                f"{type(obj).__name__}")
    bad_keys = [k for k in obj if not isinstance(k, str)]
    if bad_keys:
        raise _ckpt_error(path, f"expected a state_dict: keys must be strings, got {bad_keys[0]!r} "
                                f"({type(bad_keys[0]).__name__})")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        kinds = ", ".join(f"{k!r} ({type(obj[k]).__name__})" for k in not_tensors[:3])
        more = f" and {len(not_tensors) - 3} more" if len(not_tensors) > 3 else ""
        raise _ckpt_error(path, "expected a state_dict (a mapping of names to tensors); these "
                                f"entries are not tensors: {kinds}{more} (a training checkpoint? "
                                "save model.state_dict())")
    return {k: _torch_value(v) for k, v in obj.items()}


def read_checkpoint(path: str) -> dict:
    """Read a checkpoint into numpy arrays without ever unpickling arbitrary objects.

    .safetensors (read with safetensors' numpy API; BF16 converted here) or a .pt/.pth
    state_dict (torch.load with weights_only=True). Floating-point tensors come back as
    float32 arrays, integer ones unchanged; tensors that cannot be weights (float8,
    complex, sparse, ...) as UnusableTensor, which match_checkpoint reports."""
    path = os.fsdecode(path)
    _check_checkpoint_file(path)
    lower = path.lower()
    if not lower.endswith(CHECKPOINT_SUFFIXES):
        ext = os.path.splitext(path)[1] or "no extension"
        hint = ""
        if lower.endswith(".bin"):
            hint = (" (a pytorch_model.bin saved with torch.save: rename it to .pt; it is then "
                    "read with torch.load(weights_only=True))")
        elif lower.endswith(".npz"):
            hint = " (save the arrays with safetensors.numpy.save_file instead)"
        raise _ckpt_error(path, f"unknown checkpoint format ({ext}): use .safetensors, or a "
                                f".pt/.pth state_dict{hint}")
    if lower.endswith(".safetensors"):
        return _read_safetensors(path)
    return _read_torch(path)


def save_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    """Write tensors to `path` as is (not atomic: for a temporary file)."""
    from safetensors.numpy import save_file

    # safetensors writes metadata in hash-map order: one key keeps the bytes reproducible
    if metadata and len(metadata) > 1:
        import json

        metadata = {"archc": json.dumps(metadata, sort_keys=True)}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=metadata)


def write_checkpoint(path: str, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    """Write a .safetensors checkpoint atomically (complete, or the old file untouched)."""
    from .util import atomic_output

    with atomic_output(path, suffix=".safetensors") as tmp:
        save_safetensors(tmp, tensors, metadata)
