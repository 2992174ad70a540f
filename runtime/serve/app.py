"""The FastAPI application: routes, error mapping, lifespan (batcher + warm-up). ``create_app(model, config)``."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ClinBertError, InputError, require
from ..model import ClinicalBert, EmbedResult, FillMaskResult
from .batcher import Batcher, EmbedTask, MaskTask
from .config import ServeConfig
from .errors import ErrorResponse_RESPONSES as _unused  # noqa: F401  (placeholder, replaced below)
