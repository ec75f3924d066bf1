"""Image files into a model's input: the one preprocessing that predictions and folder data sets share.

A grey model (one channel) takes pictures in Fashion-MNIST's form, below; a colour model (three
channels) takes them as torchvision's classification references prepare photos: RGB (transparency
composited onto white), the shorter side resized to the model's side S (bilinear, antialiased), then the
centre S x S cropped; nothing is inverted, trimmed or moved, since a colour photo's ground is part of
what it shows. An image already S x S is taken as it is, as CIFAR-10's are.

The grey form, step by step:

Fashion-MNIST images are 28x28, grey, a light object on a dark ground, the object
trimmed and scaled so its longer side fills the frame. `load_image` makes any PNG or
JPEG look like that:
  1. EXIF rotation applied; transparency composited onto white; converted to 8-bit grey,
     16- and 32-bit values scaled to 0-255 (not clipped: see `_wide_to_grey`).
  2. Inverted when the ground is light (mean of the border pixels above 50%), so that
     an ordinary product photo on white becomes light-on-dark.
  3. A 28x28 image (an S x S one, for a model of side S) is then taken as it is (it is already in
     Fashion-MNIST's form).
     A larger or smaller one has its ground removed: the ground's level is the median of
     the border pixels, and pixels within the border's own spread of it become black, the
     rest stretched to 0-255 above it, so an off-white, grey or textured ground (paper at
     (215, 210, 200) is 45 after inversion) is trimmed as a white one is. A dark ground
     (Fashion-MNIST's own) has level 0 and is left as it is. The image is then trimmed to
     the object's bounding box (pixels above 10% of the brightest), scaled so its longer
     side is 28 pixels (Lanczos), and centred on a black 28x28 square.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch

from lenet.core.errors import ImageError
from lenet.core.text import plural
from lenet.data.registry import IMAGE_SIZE

MAX_PIXELS = 40_000_000  # larger images are refused: a decompression bomb, not a photo
# An image whose longer side is under this many pixels is far smaller than the model's 28x28: it is
# scaled up to fit, so its pixels turn into blurred blocks, and `lenet predict` warns.
SMALL_SIDE = 14
# The decoders Pillow may use. Others are never tried: EPS runs Ghostscript, libtiff prints its
# complaints about a damaged TIFF straight to stderr, and the rest are rare and little used.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
# In a directory, the files taken as images: those named like one of IMAGE_FORMATS.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".gif", ".bmp", ".webp")


# A pixel has colour when its channels differ by more than this (of 255): JPEG's chroma noise on a grey
# photo stays under about 10.
COLOURFUL = 24
# An image has colour when at least this share of its pixels does: a coloured speck is not a colour photo.
COLOURFUL_SHARE = 0.01
COLOUR_CHECK_SIDE = 64  # images are checked for colour on a copy at most this many pixels on a side


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, channels: int = 1,
               size: int = IMAGE_SIZE) -> torch.Tensor:  # fmt: skip
    """An image file as a uint8 tensor [C, S, S]: grey in Fashion-MNIST's form (the default, [1, 28, 28]),
    or RGB resized and centre-cropped (`channels` 3)."""
    with opened(path, str(path), max_pixels) as img:
        return prepared(img, channels, size)


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS, channels: int = 1,
                 size: int = IMAGE_SIZE) -> torch.Tensor:  # fmt: skip
    """Encoded image bytes (an upload) as a uint8 tensor [C, S, S], as `load_image`; `name` is for messages."""
    with opened(io.BytesIO(data), name, max_pixels) as img:
        return prepared(img, channels, size)


def prepared(img, channels: int = 1, size: int = IMAGE_SIZE) -> torch.Tensor:
    """A decoded PIL image in any mode and size as a model's input, uint8 [C, S, S]."""
    if channels == 1:
        return _to_side(_to_grey(img), size)
    return _resized_and_cropped(_to_rgb(img), size)


def image_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """(width, height) from an image's header, no pixel decoded: what decoding it will cost.

    Whatever size the header claims, however large: the caller's budget judges it (the server answers
    413 with its own figure), not Pillow's decompression-bomb limit, which `Image.open` applies first.
    """
    from PIL import Image

    with _pillow_errors(name):
        try:
            with Image.open(_nonempty(io.BytesIO(data), name), formats=IMAGE_FORMATS) as img:
                return img.size
        except Image.DecompressionBombError:
            return _claimed_size(data, name)


def _claimed_size(data: bytes, name: str) -> tuple[int, int]:
    """The size a header claims, read by the same Pillow plugin `Image.open` chose, but without the
    decompression-bomb check it makes once the header is read (the one thing that failed)."""
    from PIL import Image

    Image.init()
    for image_format in IMAGE_FORMATS:
        factory, accept = Image.OPEN[image_format]
        accepted = not accept or accept(data[:16])  # as Image.open asks: a str is a warning, not a yes
        if accepted and not isinstance(accepted, str):
            try:
                with factory(io.BytesIO(data), "") as img:
                    return img.size
            except (SyntaxError, IndexError, TypeError, struct.error):  # what Image.open skips a format on
                continue
    raise ImageError(f"{name}: no image header Pillow can read", "not_an_image")  # not reached: Image.open read one


def quiet_pillow_warnings() -> None:
    """Pillow's warnings off for this process: the damaged metadata it warns of on stderr does not
    matter here (the pixels decide), and its decompression-bomb warning is moot (every decode here is
    bounded by its own `max_pixels`, checked on the header before any pixel is decoded).

    Called once at a command's start, on the main thread. Decoding itself never touches the warning
    filters or `Image.MAX_IMAGE_PIXELS`: both are process-wide, and the server decodes on many threads.
    Filters by module name, so that Pillow is not imported for a command that reads no image.
    """
    warnings.filterwarnings("ignore", module=r"PIL\.")  # DecompressionBombWarning too: PIL.Image warns it
    warnings.filterwarnings("ignore", category=UserWarning, module=r"lenet\.data\.images")  # Pillow's, at stacklevel 2


@contextmanager
def opened(source: str | os.PathLike | IO[bytes], name: str, max_pixels: int = MAX_PIXELS) -> Iterator:
    """The image decoded (EXIF rotation applied), within the block; any failure one ImageError naming it."""
    from PIL import Image, ImageOps

    with _pillow_errors(name, max_pixels), Image.open(_nonempty(source, name), formats=IMAGE_FORMATS) as img:
        # The explicit bound, checked on the header before any pixel is decoded.
        if img.width * img.height > max_pixels:
            raise ImageError(f"{name}: {img.width}x{img.height} pixels is over the limit of {max_pixels:,}", "image_too_large")
        if img.width * img.height == 0:
            raise ImageError(f"{name}: an image of {img.width}x{img.height} pixels is empty", "empty_image")
        img.load()
        yield ImageOps.exif_transpose(img, in_place=True) or img


def _nonempty(source: str | os.PathLike | IO[bytes], name: str) -> str | os.PathLike | IO[bytes]:
    """The source, unless it holds no bytes at all: that is an empty file, not a damaged image."""
    if isinstance(source, io.BytesIO):
        empty = not source.getbuffer().nbytes
    else:
        try:
            empty = os.stat(source).st_size == 0
        except OSError:
            return source  # Pillow's open says what is wrong (no such file, a directory, ...)
    if empty:
        raise ImageError(f"{name}: empty file, 0 bytes", "empty_file")
    return source


@contextmanager
def _pillow_errors(name: str, max_pixels: int = MAX_PIXELS) -> Iterator[None]:
    """Whatever Pillow raises for a file, as one ImageError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file", "no_such_file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: a directory, not an image file", "not_a_file") from None
    except Image.DecompressionBombError:  # Pillow's own limit, when it is lower than ours
        raise ImageError(f"{name}: over the limit of {max_pixels:,} pixels (a decompression bomb?)", "image_too_large") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a {', '.join(IMAGE_FORMATS)} image Pillow can read", "not_an_image") from None
    except Exception as e:  # Pillow's decoders raise many types for a damaged file (OSError, SyntaxError,
        # struct.error, IndexError, MemoryError, ...): all of them mean the file cannot be decoded
        raise ImageError(f"{name}: cannot decode image ({type(e).__name__}: {e})", "damaged_image") from None


def from_pixels(pixels: torch.Tensor, channels: int = 1, size: int = IMAGE_SIZE) -> torch.Tensor:
    """A uint8 array, grey [H, W] or RGB [H, W, 3] (say, pixels sent as JSON), through the same steps as an
    image file, as uint8 [C, S, S]."""
    from PIL import Image

    return prepared(Image.fromarray(pixels.to(torch.uint8).numpy()), channels, size)


def to_fashion_mnist(img) -> torch.Tensor:
    """A PIL image in any mode and size as a uint8 tensor [1, 28, 28]."""
    return prepared(img)


def has_colour(img) -> bool:
    """Whether a decoded image shows colour: at least COLOURFUL_SHARE of its pixels with channels more than
    COLOURFUL apart (an RGB file of a grey picture has none)."""
    from PIL import ImageChops

    if img.mode in ("1", "L", "LA", "I", "F", "LAB") or img.mode.startswith("I;16"):
        return False
    rgb = _to_rgb(img)
    rgb.thumbnail((COLOUR_CHECK_SIDE, COLOUR_CHECK_SIDE))
    r, g, b = rgb.split()
    chroma = ImageChops.subtract(ImageChops.lighter(ImageChops.lighter(r, g), b),
                                 ImageChops.darker(ImageChops.darker(r, g), b))  # fmt: skip
    colourful = sum(chroma.histogram()[COLOURFUL + 1 :])
    return colourful >= COLOURFUL_SHARE * rgb.width * rgb.height


def _to_rgb(img):
    """Any mode to "RGB": transparency composited onto white; 16-bit and float grey scaled as `_to_grey` does."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        return Image.composite(rgba.convert("RGB"), white, rgba.getchannel("A"))
    if img.mode in ("LAB", "I", "F") or img.mode.startswith("I;16"):
        return _to_grey(img).convert("RGB")
    return img.convert("RGB")


def _resized_and_cropped(rgb, size: int) -> torch.Tensor:
    """torchvision's Resize(S) then CenterCrop(S): the shorter side to S (bilinear, antialiased), the centre
    S x S kept; as uint8 [3, S, S]."""
    from PIL import Image

    w, h = rgb.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        resized = (max(size, round(w * scale)), max(size, round(h * scale)))
        rgb = rgb.resize(resized, Image.Resampling.BILINEAR)
        left, top = round((resized[0] - size) / 2), round((resized[1] - size) / 2)
        rgb = rgb.crop((left, top, left + size, top + size))
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return pixels.reshape(size, size, 3).permute(2, 0, 1).contiguous()


def _to_grey(img):
    """Any mode to "L": transparency composited onto white first, on grey copies to save memory."""
    from PIL import Image

    if img.mode == "LAB":  # (a TIFF mode) Pillow cannot convert it, but its first band is the lightness
        return img.getchannel("L")
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return _wide_to_grey(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        white = Image.new("L", rgba.size, 255)
        return Image.composite(rgba.convert("L"), white, rgba.getchannel("A"))
    return img.convert("L")


# The brightest value of each scale a 32-bit mode may be on, darkest scale first.
WIDE_SCALES = {"F": (1.0, 255.0, 65535.0), "I": (255, 65535, 2**31 - 1)}


def _wide_to_grey(img):
    """A 16-bit, 32-bit or float grey image as "L", its values scaled to 0-255 and rounded.

    Pillow's own conversion clips instead (a 16-bit PNG's 0-65535 would become mostly 255).
    16-bit modes (a 16-bit PNG) span 0-65535. "I" and "F" carry no range of their own: Pillow
    fills "I" from 8-bit (`convert("I")`) and 16-bit sources alike, and a float image holds 0-1
    (numpy, scikit-image) or 0-255 (`convert("F")`); each is read on the first of WIDE_SCALES that
    holds its brightest value, and anything outside it (negative, NaN, over 2^31 - 1) is clipped.
    A 16-bit grey PNG's transparent grey level (tRNS) becomes white, as transparency does above.
    """
    import numpy as np
    from PIL import Image

    values = np.asarray(img)
    if img.mode.startswith("I;16"):
        top = 65535
    else:
        finite = values[np.isfinite(values)] if img.mode == "F" else values
        brightest = finite.max(initial=0)
        top = next((t for t in WIDE_SCALES[img.mode] if brightest <= t), WIDE_SCALES[img.mode][-1])
    grey = np.nan_to_num(values.astype(np.float32) * np.float32(255 / top), nan=0.0)
    grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):
        grey[values == transparent] = 255
    return Image.fromarray(grey)


def _to_side(grey, size: int = IMAGE_SIZE) -> torch.Tensor:
    """A grey image in Fashion-MNIST's form, uint8 [1, S, S]."""
    from PIL import ImageOps

    if _border_mean(grey) > 127:
        grey = ImageOps.invert(grey)
    if grey.size != (size, size):
        grey = _fit_object(grey, size)
    pixels = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8)
    return pixels.reshape(1, size, size)


def _border_mean(grey) -> float:
    w, h = grey.size
    edges = [grey.crop(box).tobytes() for box in ((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))]
    pixels = b"".join(edges)
    return sum(pixels) / len(pixels)


# The ground's spread: this many times the median distance of the border pixels from their median (the
# MAD). A textured ground (paper, cloth, a JPEG's noise) lies within it, and an object that covers up
# to half the border (a photo cut by its frame) does not move it, as it would a quantile or a maximum.
GROUND_SPREAD_MADS = 3
# A border is taken as a ground only if it is flat: its spread under this many times its level. Paper and
# cloth, textured by up to +-25 levels, measured 0.5-1.5; the 30 of Fashion-MNIST's 10,000 test images
# (scaled to 56x56) whose object covers most of the border measured 2.25 and over: they are left as they are.
FLAT_GROUND = 2


def _ground(grey) -> tuple[int, int]:
    """The ground's level (the median of the border pixels) and its spread, both 0-255."""
    w, h = grey.size
    edges = [grey.crop(box).tobytes() for box in ((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))]
    pixels = sorted(b"".join(edges))
    level = pixels[len(pixels) // 2]
    distances = sorted(abs(v - level) for v in pixels)
    return level, GROUND_SPREAD_MADS * distances[len(distances) // 2]


def _remove_ground(grey):
    """The ground made black: pixels within its spread of its level to 0, the rest stretched from the level
    to 0-255. Unchanged where the ground is black already, or where nothing would be left above it."""
    level, spread = _ground(grey)
    if level == 0 or spread >= FLAT_GROUND * level:
        return grey  # Fashion-MNIST's form already (a black ground), or a border that is no flat ground
    above = level + spread
    table = [0 if v <= above else min(255, round((v - level) * 255 / (255 - level))) for v in range(256)]
    cleared = grey.point(table)
    return cleared if cleared.getextrema()[1] else grey  # an object no brighter than its ground: kept as it was


def _fit_object(grey, size: int):
    from PIL import Image

    grey = _remove_ground(grey)
    brightest = grey.getextrema()[1]
    box = grey.point(lambda v: 255 if v > brightest * 0.1 else 0).getbbox() if brightest else None
    if box:
        grey = grey.crop(box)
    w, h = grey.size
    scale = size / max(w, h)
    fitted = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = grey.resize(fitted, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(grey, ((size - fitted[0]) // 2, (size - fitted[1]) // 2))
    return canvas



# --- many files: directories, unreadable files, a CSV of the results ----------------------


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str  # "not named as an image" (in a directory), or the ImageError's message

    @property
    def unreadable(self) -> bool:
        return self.reason != NOT_AN_IMAGE_NAME

    @property
    def why(self) -> str:
        """The reason without the path in front, which an ImageError's message starts with."""
        return self.reason.removeprefix(f"{self.path}: ")


NOT_AN_IMAGE_NAME = "not named as an image"
NAMED = 10  # files named in a one-line summary; the rest are counted


@dataclass(frozen=True)
class LoadedImages:
    paths: list[str]  # the files read, in order
    images: torch.Tensor  # uint8 [N, C, S, S], one per path
    skipped: list[Skipped]  # files left out, and why
    small: list[str] = field(default_factory=list)  # files read whose longer side is under SMALL_SIDE

    def skipped_summary(self) -> str:
        """One line, e.g. "skipped 2 files: 1 not named as an image, 1 unreadable: notes.txt (not named as
        an image), cut.png (empty file, 0 bytes)" ("" when none); the first NAMED files named."""
        if not self.skipped:
            return ""
        unreadable = sum(s.unreadable for s in self.skipped)
        parts = [f"{n} {why}" for n, why in ((len(self.skipped) - unreadable, NOT_AN_IMAGE_NAME),
                                             (unreadable, "unreadable")) if n]  # fmt: skip
        named = ", ".join(f"{s.path} ({s.why})" for s in self.skipped[:NAMED])
        more = f", and {len(self.skipped) - NAMED} more" if len(self.skipped) > NAMED else ""
        return f"skipped {plural(len(self.skipped), 'file')}: {', '.join(parts)}: {named}{more}"

    def small_warning(self) -> str:
        """One line for all the images much smaller than the model's input ("" when none): they were scaled up."""
        if not self.small:
            return ""
        side = self.images.shape[-1]
        named = ", ".join(self.small[:NAMED]) + (f", and {len(self.small) - NAMED} more" if len(self.small) > NAMED else "")
        return (f"warning: {plural(len(self.small), 'image')} under {SMALL_SIDE}x{SMALL_SIDE} pixels scaled up to "
                f"{side}x{side}, so blurred; expect less reliable answers: {named}")


def find_images(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """Files as given; a directory's files recursively, sorted, those not named as an image skipped."""
    found: list[Path] = []
    skipped: list[Skipped] = []
    for given in map(Path, paths):
        if not given.is_dir():
            found.append(given)  # even a missing one: reading it says "no such file"
            continue
        inside = sorted(Path(root) / name for root, _, names in os.walk(given) for name in names)
        found += [p for p in inside if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [Skipped(str(p), NOT_AN_IMAGE_NAME) for p in inside if p.suffix.lower() not in IMAGE_SUFFIXES]
    return found, skipped


def load_images(paths: Iterable[str | os.PathLike], skip_bad: bool = False, channels: int = 1,
                size: int = IMAGE_SIZE) -> LoadedImages:  # fmt: skip
    """Every image in `paths` (files and directories) as one batch, uint8 [N, C, S, S] (see `load_image`).

    An unreadable file raises its ImageError, or with `skip_bad` is left out and listed in
    `skipped`; having no image at all is an ImageError either way.
    """
    files, skipped = find_images(paths)
    read, images = [], []
    small: list[str] = []
    for path in files:
        try:
            with opened(path, str(path)) as img:
                image, (width, height) = prepared(img, channels, size), img.size
        except ImageError as e:
            if not skip_bad:
                raise
            skipped.append(Skipped(str(path), str(e)))
        else:
            read.append(str(path))
            images.append(image)
            if max(width, height) < SMALL_SIDE:
                small.append(str(path))
    if not images:
        given = ", ".join(map(str, paths)) if isinstance(paths, Sequence) else "the paths given"
        summary = LoadedImages([], torch.empty(0), skipped).skipped_summary()
        raise ImageError(f"no image to predict in {given}" + (f"; {summary}" if summary else ""), "no_image")
    return LoadedImages(read, torch.stack(images), skipped, small)

