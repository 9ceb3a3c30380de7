"""erf for the tests' references without SciPy: math.erf vectorised."""

from __future__ import annotations

import math

import numpy as np

erf = np.vectorize(math.erf, otypes=[np.float64])
