# A miniature Wan2GP for wgpm's tests: the shape of the real wgp.py's load path
# (definitions, family handlers, download_models' order, the variant rule), small
# enough to read. Not Wan2GP's code.
import glob
import importlib
import json
import os

from mmgp import offload  # noqa: F401  (Wan2GP imports it first; so does the tracer)
from shared.utils.download import download_file, process_files_def

WanGP_version = "0.1"
target_mmgp_version = "3.7.12"
server_config = {}
transformer_quantization = "int8"
text_encoder_quantization = "int8"
transformer_dtype_policy = ""

family_handlers = ["models.mini.mini_handler"]
model_types_handlers = {}
for path in family_handlers:
    handler = importlib.import_module(path).family_handler
    for model_type in handler.query_supported_types():
        model_types_handlers[model_type] = handler

models_def = {}
for file in sorted(glob.glob("defaults/*.json")):
    with open(file) as f:
        models_def[os.path.basename(file)[:-5]] = json.load(f)["model"]


def get_model_def(model_type):
    return models_def[model_type]


def get_base_model_type(model_type):
    return models_def[model_type]["architecture"]


def get_lora_dir(model_type):
    lora_dir = os.path.join("loras", "mini")
    os.makedirs(lora_dir, exist_ok=True)
    return lora_dir


def get_model_filename(choices, quantization, dtype_policy):
    if len(choices) <= 1:
        return choices[0]
    order = {"int8": ["int8", "fp8"], "fp8": ["fp8", "int8"]}.get(quantization, [])
    sub = [c for token in order for c in choices if token in os.path.basename(c).lower()]
    if not sub:
        return choices[0]
    dtype = "fp16" if dtype_policy == "fp16" else "bf16"
    preferred = [c for c in sub if dtype in os.path.basename(c)]
    return (preferred or sub)[0]


def load_models(model_type):
    model_def = get_model_def(model_type)
    process_files_def(repoId="DeepBeepMeep/Wan2.1", sourceFolderList=["pose"], fileList=[["yolox_l.onnx"]])
    transformer = get_model_filename(model_def["URLs"], transformer_quantization, transformer_dtype_policy)
    download_file(transformer, os.path.join("ckpts", os.path.basename(transformer)))
    text_encoder = get_model_filename(model_def["text_encoder_URLs"], text_encoder_quantization, transformer_dtype_policy)
    download_file(text_encoder, os.path.join("ckpts", model_def["text_encoder_folder"], os.path.basename(text_encoder)))
    handler = model_types_handlers[get_base_model_type(model_type)]
    for files in handler.query_model_files(model_def):
        process_files_def(**files)
    return handler.load_model(transformer, text_encoder)
