"""How MNIST's digits are laid out, as numbers and in a user's words: the served digit
model brings every image to this layout (:func:`.preprocessing.pixels_from_image`), and
``variants score --help`` and the model card say so. Plain constants: importing this
module costs nothing (the command line's help reads it)."""

from __future__ import annotations

MNIST_SIDE, MNIST_BOX = 28, 20  # digits were fitted into 20x20, centred in 28x28
# Where MNIST's digits have their centre of mass (row, column), and how far from it any of
# its 70,000 digits lies (measured: at most 0.52 pixels; mean (13.995, 14.008)).
MNIST_CENTRE, MNIST_CENTRE_TOLERANCE = 14.0, 0.6
_CENTRE = f"({MNIST_CENTRE:g}, {MNIST_CENTRE:g})"
# What the served digit model does with an image, in a user's words.
IMAGE_LAYOUT = (
    "images of any format, size and layout: a light background is inverted; an image "
    f"already laid out as MNIST's digits are ({MNIST_SIDE}x{MNIST_SIDE}, the ink's box "
    f"{MNIST_BOX - 1}-{MNIST_BOX} pixels on its long side, its centre of mass within "
    f"{MNIST_CENTRE_TOLERANCE:g} pixels of {_CENTRE}: every one of MNIST's 70,000 digits) is "
    "taken as it is, so MNIST's own files score as the stored test set; any other (another "
    f"size, a {MNIST_SIDE}x{MNIST_SIDE} resize, a digit off centre or small) is laid out as "
    f"MNIST's digits were: the ink's bounding box scaled into {MNIST_BOX}x{MNIST_BOX} keeping "
    f"its aspect ratio, centred by its centre of mass in {MNIST_SIDE}x{MNIST_SIDE}"
)
