"""Files for the document tests: real PDFs, PNGs and JPEGs, and things that only claim to be."""

import io
import zipfile

from PIL import Image

# A minimal, complete PDF (one empty page).
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")


def pdf(text: str = "Certificate of analysis") -> bytes:
    """A small PDF carrying `text` (so two certificates differ)."""
    return PDF.replace(b"%%EOF", f"% {text}\n%%EOF".encode())


def png(size=(40, 20), text: dict | None = None) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def jpeg_with_gps() -> bytes:
    """A JPEG whose EXIF carries a GPS position (Paris) and a camera model."""
    image = Image.new("RGB", (32, 32), (10, 120, 200))
    exif = Image.Exif()
    exif[0x0110] = "Clinic phone"  # Model
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}  # GPSInfo
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def zip_bomb() -> bytes:
    """A zip of 50 MB of zeros (a few tens of kB): what a 'zip bomb' upload looks like."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.bin", b"\0" * (50 * 1024 * 1024))
    return out.getvalue()


def png_bomb() -> bytes:
    """A real PNG declaring 20000 x 20000 pixels (400 megapixels) in a few hundred kB."""
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, "PNG")
    return out.getvalue()
