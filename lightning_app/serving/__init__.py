"""The code that goes inside model.tar.gz (``code/``): torch, torchvision, Pillow and the standard library only.

A package here so the layer contract (``make lint``) can check what it imports; the files are copied into
the tarball by name (``builder.SERVING_FILES``) and run there as top-level modules.
"""
