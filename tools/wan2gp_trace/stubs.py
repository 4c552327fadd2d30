"""Permissive stand-ins for the heavy modules wgp.py imports (torch, gradio,
transformers, ...). Any attribute, call, subscript or subclassing works and
yields another stand-in, so module-level code runs without a GPU stack.
Only the download path's results are recorded; nothing here computes."""
import importlib.abc
import importlib.machinery
import sys
import types

HEAVY = {
    "torch", "torchvision", "torchaudio", "gradio", "gradio_client", "transformers", "diffusers",
    "accelerate", "cv2", "numpy", "PIL", "mmgp", "safetensors", "einops", "decord", "librosa",
    "soundfile", "scipy", "onnxruntime", "av", "imageio", "imageio_ffmpeg", "tqdm", "requests",
    "huggingface_hub", "peft", "timm", "sentencepiece", "tokenizers", "psutil", "pynvml",
    "matplotlib", "skimage", "ffmpeg", "moviepy", "pydub", "omegaconf", "yaml", "rembg",
    "insightface", "mediapipe", "xformers", "triton", "sageattention", "flash_attn", "spaces",
    "pyannote", "audio_separator", "loguru", "dashscope", "openai", "llama_cpp", "GPUtil", "cpuinfo",
    "mutagen", "pyloudnorm", "nunchaku", "lightx2v", "kornia", "open_clip", "ftfy", "regex",
}


class Stub(types.ModuleType):
    def __init__(self, name="stub"):
        super().__init__(name)
        self.__path__ = []

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        child = Stub(f"{self.__name__}.{name}")
        setattr(self, name, child)
        return child

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # decorator use
        return Stub(self.__name__ + "()")

    def __mro_entries__(self, bases):
        # a fresh base per stub: a class may derive from several stubs at once
        return (type(self.__name__.rsplit(".", 1)[-1], (StubBase,), {}),)

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def __bool__(self):
        return False

    def __getitem__(self, key):
        return Stub(self.__name__ + "[]")

    def __setitem__(self, key, value):
        pass

    def __delitem__(self, key):
        pass

    def __contains__(self, item):
        return False

    def __await__(self):
        return iter(())

    def __round__(self, n=None):
        return 0

    def __abs__(self):
        return self

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce_ex__(self, protocol):
        return (Stub, (self.__name__,))

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def __or__(self, other):
        return self

    __ror__ = __and__ = __rand__ = __add__ = __radd__ = __sub__ = __rsub__ = __or__
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __neg__ = __or__
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __matmul__ = __rmatmul__ = __or__

    def __neg__(self):
        return self

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)

    def __lt__(self, other):
        return False

    __gt__ = __le__ = __ge__ = __lt__

    def __int__(self):
        return 0

    def __float__(self):
        return 0.0

    def __index__(self):
        return 0

    def __str__(self):
        return ""

    def __fspath__(self):
        return ""


class StubBase:
    def __init__(self, *a, **k):
        pass

    def __init_subclass__(cls, **kwargs):  # class X(TypedDictLike, total=False)
        pass

    def __getattr__(self, name):
        return Stub(name)


class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """First on the path: the heavy modules are always stand-ins."""

    def __init__(self, heavy):
        self.heavy = heavy

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.heavy:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return Stub(spec.name)

    def exec_module(self, module):
        pass


class Fallback(Finder):
    """Last on the path: any module nothing else finds (whisper, a version's new
    dependency) is a stand-in too, so every version imports."""

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in ("mmgp", "models", "shared", "wgp"):
            return None  # mmgp picks files and the checkout's own code is the subject: never stand-ins
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)


# optimum-quanto's qtype names (optimum/quanto/tensor/qtype.py, 0.2.x): mmgp derives the
# quantization tokens that pick a file ("int8", "fp8") from them.
QUANTO_QTYPES = ["qint2", "qint4", "qint8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2", "qfloat8"]


def install(stub_mmgp=False):
    # wgp.py writes its settings (holding stand-in values) as JSON on first start.
    import json
    plain = json.JSONEncoder.default
    json.JSONEncoder.default = lambda self, o: None if isinstance(o, (Stub, StubBase)) else plain(self, o)
    heavy = set(HEAVY) if stub_mmgp else set(HEAVY) - {"mmgp"}
    sys.meta_path.insert(0, Finder(heavy))
    sys.meta_path.append(Fallback(heavy))
    import optimum.quanto.tensor.qtype as qtype  # the stand-in
    qtype.qtypes = {name: Stub(name) for name in QUANTO_QTYPES}


def after_import(wgp):
    """Module-level values the load path reads that a stand-in cannot answer."""
    wgp.bfloat16_supported = True


def preset():
    """Answers wgp.py's module-level probes need as real values: a bf16-class
    GPU (capability 8.0), so the auto dtype is bf16 as on the GPUs wgpm targets."""
    import torch  # the stub
    import torch.cuda  # noqa: F401  (imported now, so a later import keeps these answers)
    import torch.backends.mps  # noqa: F401
    torch.cuda.get_device_capability = lambda *a, **k: (8, 0)
    torch.cuda.is_available = lambda *a, **k: True
    torch.cuda.device_count = lambda *a, **k: 1
    torch.cuda.get_device_name = lambda *a, **k: "stub"
    torch.backends.mps.is_available = lambda *a, **k: False
    torch.__version__ = "2.7.0"
