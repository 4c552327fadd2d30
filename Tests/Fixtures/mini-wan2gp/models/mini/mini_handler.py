class family_handler:
    @staticmethod
    def query_supported_types():
        return ["mini"]

    @staticmethod
    def query_model_files(model_def):
        files = [{"repoId": "Org/Mini", "sourceFolderList": ["mini_tokenizer"], "fileList": [["tokenizer.json", "vocab.json"]]}]
        if model_def.get("audio"):
            files.append({"repoId": "Org/Mini", "sourceFolderList": ["mini_audio"], "fileList": [["audio.safetensors"]]})
        return files

    @staticmethod
    def load_model(*args, **kwargs):
        raise RuntimeError("the miniature Wan2GP builds no model")
