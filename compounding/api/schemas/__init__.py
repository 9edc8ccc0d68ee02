"""Marshmallow schemas: what the API accepts and answers (and what OpenAPI documents), one module per area.

Every schema is also importable from here, as it was before the split.
"""

from .audit import *  # noqa: F403
from .batches import *  # noqa: F403
from .common import *  # noqa: F403
from .formulas import *  # noqa: F403
from .ingredients import *  # noqa: F403
from .lots import *  # noqa: F403
from .recalls import *  # noqa: F403
from .scan import *  # noqa: F403
from .treatments import *  # noqa: F403
