"""The SageMaker images' software stacks on this machine, without Docker: a virtual environment with the
image's Python, torch and torchvision (``environment.py``), and for the inference image TorchServe under
AWS's inference toolkit serving a package (``torchserve.py``). Promote's gate (``deploy.gate_stack=container``)
and capacity measurement run there, so what passes is what the endpoint will run.

    python -m deploy.image_stack          # build (or reuse) the deploy image's stack; prints its python
"""
