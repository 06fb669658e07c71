"""Your own digit: turn a photo or a drawing of a handwritten digit into an MNIST-like 28x28 image.

    from tinygrad_mnist.lab.digits import load_digit
    from tinygrad_mnist.lab.data import normalize
    digit = load_digit("my_seven.jpg")               # uint8 (28, 28): white ink on black, like MNIST
    inputs = normalize(digit[None], flatten=True)    # float32 (1, 784), as in training

A model trained on MNIST has only ever seen MNIST's preprocessing (LeCun, Cortes, Burges): the
digit, white on black, fitted into a 20x20 box keeping its aspect ratio, with grey edges from
anti-aliasing, then placed in a 28x28 field so that its centre of mass is at the field's centre.
A phone photo is none of that: dark ink on light paper, anywhere in a large picture, on paper that
is brighter on one side. `preprocess` redoes MNIST's steps on it:

1. grey scale (a transparent drawing is first laid on white paper);
2. inverted when the background is light, so the ink is bright and the paper dark;
3. the paper subtracted: its brightness is modelled as a smooth surface (a quadratic in x and y)
   fitted to the pixels that are not ink, so a shadow or a lighting gradient across the page is
   removed rather than mistaken for ink;
4. cropped to the ink: a pixel is ink when it stands out from the paper by at least INK_THRESHOLD
   of the strongest ink in the picture, a threshold relative to the image's own range, so dark and
   faint pens, bright and dim photos work alike; weaker pixels (paper grain, noise) are set to 0;
5. fitted into 20x20 keeping the aspect ratio: the ink from its median pixel up counts as solid,
   as MNIST's strokes are; strokes much thinner than MNIST's (a fine pen) are thickened to MNIST's
   median width; then Pillow's Lanczos filter resizes it with the soft grey edges MNIST
   has, and its brightest pixel becomes 255;
6. placed in 28x28 so that its centre of mass lands on the centre of the field, pixel (14, 14).

Pillow, an optional extra (`pip install -e ".[images]"`), reads the files and resizes.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np

from .extras import require

INSTALL_HINT = 'reading images needs Pillow: pip install -e ".[images]"'
FIELD = 28  # MNIST's image size
BOX = 20  # the digit is fitted into a BOX x BOX square inside the field
INK_THRESHOLD = 0.25  # a pixel is ink when it is at least this fraction of the strongest ink
MIN_CONTRAST = 32  # grey levels (of 255) the ink must stand out by; below that there is no digit
FIT_SAMPLES = 4000  # pixels the paper's surface is fitted to
PAPER_FITS = 3  # fits of the paper's surface, each leaving out the ink the previous one found
STROKE = 0.165  # MNIST's median stroke width, a fraction of the digit's longest side (3.3 of 20 pixels)
THINNEST = 0.10  # thinner strokes (a fine pen; none of 3000 MNIST digits has them) are thickened to STROKE
SOLID_INK = 50  # ink at or above the median ink pixel counts as solid (255): pens and pressure vary
MAX_SIDE = 512  # larger photos are shrunk first: the digit ends up 20 pixels tall anyway
# an image's size is read from its header and checked before any pixel is decoded: a 343 KB PNG
# can declare 9400x9400 pixels and take 1 GB to decode. 50 million pixels take a phone's
# 8000x6000 photo (measured peak: 232 MB for that as a PNG, 54 MB as a JPEG); shrink larger ones first
MAX_PIXELS = 50_000_000
# what a digit looks like once preprocessed, measured on MNIST's images (docs/your-digit.md): a
# photo of something else (a face, a word, a blob, a texture) is refused rather than classified
MAX_INK_COVERAGE = 0.292  # of the 784 pixels above half brightness: 99.9% of the 60,000 training digits
MAX_PIECES = 3  # separate strokes of 4 pixels or more: 99.94% of the 10,000 test digits have at most 3
MIN_INK_HEIGHT = 8  # rows of ink above half brightness: none of MNIST's 70,000 digits has fewer
MIN_SIDE = 8  # a picture narrower than this cannot show a digit's strokes (MNIST's are 28x28)
MAX_ASPECT = 20  # a picture longer than this many times its width is a line, not a digit


class MissingPillowError(ImportError):
    """An image file was to be read, but Pillow is not installed; str(error) says how to install it."""


class DigitImageError(ValueError):
    """The file is not an image, is empty, or shows no digit (one flat colour, no ink)."""


def _pillow():
    PIL = require("PIL", MissingPillowError(INSTALL_HINT))
    require("PIL.ImageOps", MissingPillowError(INSTALL_HINT))
    return PIL.Image, PIL.ImageOps, PIL.UnidentifiedImageError


def read_image(path):
    """Read an image file (PNG, JPEG, ... anything Pillow reads) as grey levels: float32 (H, W) in 0..255.

    The size is checked from the file's header before any pixel is decoded (check_size). A phone
    photo is turned upright by its EXIF orientation; transparent pixels become white paper.
    Raises DigitImageError when the file is missing, empty, not an image, or of a size no digit has.
    """
    Image, ImageOps, UnidentifiedImageError = _pillow()
    unreadable = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
    path = Path(path)
    if not path.is_file():
        raise DigitImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DigitImageError(f"{path}: the file is empty")
    try:
        with warnings.catch_warnings():  # Pillow warns, then refuses, past its own limit: one line either way
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only: the size, not the pixels
    except (*unreadable, Image.DecompressionBombWarning) as error:
        raise DigitImageError(_unreadable(path, error, Image)) from None
    with image:
        check_size(*image.size, path)
        try:
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)  # a JPEG is even decoded at the reduced size
            ImageOps.exif_transpose(image, in_place=True)  # then turned upright, small
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                # a drawing with a transparent background: lay it on white paper
                paper = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(paper, image.convert("RGBA"))
            grey = np.asarray(image.convert("L"), dtype=np.float32)
        except unreadable as error:
            raise DigitImageError(_unreadable(path, error, Image)) from None
    return grey


def _unreadable(path, error, Image):
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        declared = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's message: "Image size (N pixels) exceeds ..."
        pixels = f"{int(declared.group(1)):,}" if declared else "too many"
        return (f"{path}: the image declares {pixels} pixels, more than the {MAX_PIXELS:,} read here (Pillow "
                "takes it for a decompression bomb): shrink or crop the picture first")
    reason = "not an image Pillow can read" if type(error).__name__ == "UnidentifiedImageError" else \
        f"a damaged image ({error})"
    return f"{path}: {reason}; give a PNG or JPEG of a digit"


def check_size(width, height, path="the image", rounded=False):
    """Refuse, with DigitImageError, a picture of a size no photo of one digit has: more than
    MAX_PIXELS pixels (said before decoding any), under MIN_SIDE pixels on a side, or more than
    MAX_ASPECT times longer than wide (give or take a pixel when `rounded`: a shrunk picture's
    sides are rounded to whole pixels)."""
    size = f"{width}x{height} pixels"
    if width * height > MAX_PIXELS:
        raise DigitImageError(f"{path}: {size} ({width * height / 1e6:,.1f} million), more than the "
                              f"{MAX_PIXELS / 1e6:.0f} million read here: shrink or crop the picture first")
    if min(width, height) < MIN_SIDE:
        raise DigitImageError(f"{path}: {size}, too small to show a digit; give a picture at least "
                              f"{MIN_SIDE} pixels on each side (MNIST's are 28x28)")
    if max(width, height) > MAX_ASPECT * (min(width, height) + rounded):
        raise DigitImageError(f"{path}: {size}, too thin for a digit (a picture of one is at most "
                              f"{MAX_ASPECT} times longer than wide); crop it around the digit")


def preprocess(grey):
    """MNIST's preprocessing (see the module docstring) of grey levels (H, W) in 0..255.

    Returns uint8 (28, 28): the digit in white on black, in a 20x20 box, centred by its centre of
    mass, as the training images are. Raises DigitImageError when there is no ink to find.
    """
    Image, _, _ = _pillow()
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise DigitImageError(f"preprocess needs a 2-D grey image, got shape {grey.shape}")
    check_size(grey.shape[1], grey.shape[0], "preprocess", rounded=True)
    # the paper covers most of the picture, so the median pixel is paper: light paper -> invert
    ink_up = 255 - grey if np.median(grey) > 127.5 else grey.copy()
    ink = np.clip(ink_up - _paper_level(ink_up), 0, None)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        raise DigitImageError(
            "no digit found: the image is one flat colour (blank, all white or all black), or its ink "
            f"stands out by only {strongest:.0f} of 255 grey levels"
        )
    ink[ink < INK_THRESHOLD * strongest] = 0  # paper grain and noise
    rows, columns = np.nonzero(ink)
    crop = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    # MNIST's strokes are solid white with grey edges: the strong part of the ink becomes 1
    crop = np.minimum(crop / np.percentile(crop[crop > 0], SOLID_INK), 1).astype(np.float32)
    # a fine pen or a 1-pixel brush would shrink to a faint hairline in 20x20: thicken it to MNIST's
    longest, width = max(crop.shape), _stroke_width(crop > 0)
    if width < THINNEST * longest:
        crop = _thicken(crop, round(STROKE * longest - width))

    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow sizes are (width, height)
    box = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.LANCZOS))
    box = np.clip(box, 0, None)  # Lanczos rings slightly below 0 beside sharp edges
    box *= 255 / box.max()

    # centre of mass in pixel indices, placed on pixel (14, 14) by a whole-pixel shift: where MNIST
    # has it (over its 60000 training images the mean is (14.00, 14.01), spread 0.29 pixel)
    mass_rows, mass_columns = box.sum(axis=1), box.sum(axis=0)
    centre_row = (mass_rows * np.arange(len(mass_rows))).sum() / mass_rows.sum()
    centre_column = (mass_columns * np.arange(len(mass_columns))).sum() / mass_columns.sum()
    top = int(np.clip(round(FIELD // 2 - centre_row), 0, FIELD - box.shape[0]))  # the box stays inside
    left = int(np.clip(round(FIELD // 2 - centre_column), 0, FIELD - box.shape[1]))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + box.shape[0], left : left + box.shape[1]] = box
    return np.round(field).astype(np.uint8)


def _stroke_width(ink):
    """The mean width of the strokes, in pixels, of a boolean ink mask: twice its area over its
    boundary, since a stroke of length L and width w covers L w pixels, with about 2 L on its edge."""
    padded = np.pad(ink, 1)
    interior = ink & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return 2 * ink.sum() / max(1, ink.sum() - interior.sum())


def _thicken(crop, size):
    """Each pixel becomes the largest in the size x size square around it (a dilation); the result
    is size - 1 pixels larger, so no stroke is cut at the edge. Done as a running maximum along each
    axis in turn: 2 size instead of size^2 comparisons per pixel."""
    size = max(1, size)
    padded = np.pad(crop, size - 1)
    rows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=0).max(axis=-1)
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(rows, size, axis=1).max(axis=-1))


def _paper_level(ink_up):
    """The paper's level at every pixel: a quadratic surface a + b x + c y + d x^2 + e xy + f y^2,
    fitted by least squares to the pixels that are not ink. Ink is what stands far above the
    surface; it is left out and the surface refitted, a few times, so thick strokes do not lift it.
    """
    height, width = ink_up.shape
    # fit on a grid of about FIT_SAMPLES pixels: a smooth surface needs no more, and it is fast
    stride = max(1, math.ceil(math.sqrt(height * width / FIT_SAMPLES)))
    y = (np.arange(height) + 0.5) / height - 0.5  # coordinates in [-0.5, 0.5]: a well-scaled fit
    x = (np.arange(width) + 0.5) / width - 0.5
    sample_y, sample_x = np.meshgrid(y[::stride], x[::stride], indexing="ij")
    sample_y, sample_x = sample_y.ravel(), sample_x.ravel()
    features = np.stack([np.ones_like(sample_x), sample_x, sample_y, sample_x**2, sample_x * sample_y, sample_y**2], axis=1)
    values = ink_up[::stride, ::stride].ravel().astype(np.float64)
    paper = np.ones(values.shape, dtype=bool)
    for _ in range(PAPER_FITS):
        # least squares; lstsq (not the normal equations' solve) also answers when the samples
        # cannot pin all six down (a picture a few pixels tall): the smallest such surface
        a, b, c, d, e, f = np.linalg.lstsq(features[paper], values[paper], rcond=None)[0]
        above = values - features @ (a, b, c, d, e, f)
        paper = above < INK_THRESHOLD * max(above.max(), MIN_CONTRAST)
    column, row = x[None, :], y[:, None]  # (1, W) and (H, 1) broadcast to (H, W)
    return (a + b * column + c * row + d * column**2 + e * column * row + f * row**2).astype(np.float32)


def not_a_digit(digit):
    """Why the preprocessed uint8 (28, 28) `digit` is probably not a digit, or None: its ink is
    flatter than any of MNIST's digits (a line, a word), covers more of the field than 99.9% of
    them (a blob, a texture, a photo of a scene), or falls into more separate pieces (dots, a face
    drawn with thick strokes, several digits far apart)."""
    ink = np.asarray(digit) > 127
    coverage, height = ink.mean(), int(ink.any(axis=1).sum())
    if height < MIN_INK_HEIGHT:
        return (f"probably not a digit: its ink is {height} pixels tall in the 28x28 field, and every MNIST digit "
                f"is at least {MIN_INK_HEIGHT} (a line, a word?)")
    if coverage > MAX_INK_COVERAGE:
        return (f"probably not a digit: its ink covers {coverage:.0%} of the 28x28 field, and 99.9% of MNIST's "
                f"digits cover at most {MAX_INK_COVERAGE:.0%} (a blob, a texture or a scene?)")
    pieces = _pieces(ink)
    if pieces > MAX_PIECES:
        return (f"probably not a digit: it falls into {pieces} separate pieces, and MNIST's digits into at most "
                f"{MAX_PIECES} (a face, a word, several digits?); crop it around one digit")
    return None


def _pieces(ink, smallest=4):
    """How many 8-connected pieces of at least `smallest` pixels a boolean image has. Each ink
    pixel takes the largest label around it until nothing changes: then each piece holds one label."""
    labels = np.where(ink, np.arange(1, ink.size + 1).reshape(ink.shape), 0)
    while True:
        padded = np.pad(labels, 1)
        spread = np.max([padded[row : row + ink.shape[0], column : column + ink.shape[1]]
                         for row in range(3) for column in range(3)], axis=0)
        spread = np.where(ink, spread, 0)
        if np.array_equal(spread, labels):
            break
        labels = spread
    _, sizes = np.unique(labels[ink], return_counts=True)
    return int((sizes >= smallest).sum())


def load_digit(path):
    """read_image then preprocess: the file at `path` as the uint8 (28, 28) a model trained on MNIST sees."""
    grey = read_image(path)
    try:
        return preprocess(grey)
    except DigitImageError as error:
        raise DigitImageError(f"{path}: {error}") from None
