import os


def process_files_def(repoId=None, sourceFolderList=None, fileList=None, targetFolderList=None):
    from huggingface_hub import hf_hub_download
    for folder, files in zip(sourceFolderList, fileList):
        for name in files:
            if not os.path.isfile(os.path.join("ckpts", folder, name)):
                hf_hub_download(repo_id=repoId, filename=name, local_dir="ckpts", subfolder=folder)


def download_file(url, filename):
    from huggingface_hub import hf_hub_download
    repo, name = url[len("https://huggingface.co/"):].split("/resolve/main/")
    if not os.path.isfile(filename):
        hf_hub_download(repo_id=repo, filename=name, local_dir=os.path.dirname(filename))
