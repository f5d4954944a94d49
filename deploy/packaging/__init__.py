"""The SageMaker model package (``model.tar.gz``): its builder, and the serving code inside it."""

# One raw image as a request body to the package's serving code: the endpoints, a Batch Transform record,
# the gates. Here, not in a module that imports torch: the Batch Transform request is built without it.
IMAGE_TYPE = "application/x-image"
