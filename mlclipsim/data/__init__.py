"""On-disk images and datasets."""

from mlclipsim.data.image_io import ImageReadError, list_images, read_image, read_image_array

__all__ = ["ImageReadError", "list_images", "read_image", "read_image_array"]
