"""``python -m deploy.image_stack [overrides]``: build (or reuse) the deploy image's stack, print its python."""

import sys

from conf.errors import DogbreedsError
from conf.loader import load_config
from deploy.image_stack.inference_image import inference_image

try:
    print(inference_image(load_config(sys.argv[1:]).deploy).build())
except DogbreedsError as err:
    sys.exit(f"error: {err}")
