"""Reading images and image folders (flat folders and the MVTec AD layout)."""

from inspect_app.data.images import IMAGE_EXTENSIONS, ImageInput, list_images, load_image

__all__ = ["IMAGE_EXTENSIONS", "ImageInput", "list_images", "load_image"]
