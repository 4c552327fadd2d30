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

    def __getattr__(self, name):
        return Stub(name)


class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in HEAVY:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return Stub(spec.name)

    def exec_module(self, module):
        pass


def install():
    sys.meta_path.insert(0, Finder())


def preset():
    """Answers wgp.py's module-level probes need as real values: a bf16-class
    GPU (capability 8.0), so the auto dtype is bf16 as on the GPUs wgpm targets."""
    import torch  # the stub
    torch.cuda.get_device_capability = lambda *a, **k: (8, 0)
    torch.cuda.is_available = lambda *a, **k: True
    torch.cuda.device_count = lambda *a, **k: 1
    torch.cuda.get_device_name = lambda *a, **k: "stub"
    torch.backends.mps.is_available = lambda *a, **k: False
    torch.__version__ = "2.7.0"
