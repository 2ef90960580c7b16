"""Optional web image search: find openly licensed images on a public API and import them.

Off by default (COMPOSER_WEB_IMAGES=off). When turned on, `search_web_images` (importer.py)
asks one public image API (Openverse, openverse.py, or Wikimedia Commons, wikimedia.py) for
images, downloads them (fetch.py) and adds them to the library with their license, a
ready-to-print attribution line and the landing page as source, so every imported picture
can be credited. Any failure (network, timeout, HTTP status, a malformed answer, a download
that is too big or not an image) gives a clear message and the composer goes on with the
library alone; images that did import are kept.

License choice: every license the APIs report is kept and recorded exactly ("CC BY-NC 2.0",
"CC BY-SA 4.0", "CC0 1.0", "Public domain"), including non-commercial and no-derivatives
ones, so the person publishing sees the real terms next to each image instead of the app
silently deciding which uses are allowed. `OpenverseSearch(license_type="commercial")` asks
Openverse for commercially usable images only. Wikimedia Commons only hosts free files; files
whose metadata names no license are skipped.
"""
