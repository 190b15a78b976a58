"""Library versions recorded in model files and run folders, so results can be traced."""

import platform


def library_versions() -> dict[str, str]:
    import numpy
    import torch
    import torchvision

    from napari_gfn import __version__

    return {
        "napari_gfn": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
