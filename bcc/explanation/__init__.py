"""Where the model looked: Grad-CAM maps of every output, their pictures, and the batch commands' inputs."""

__all__ = ["batch", "gradcam", "render"]
